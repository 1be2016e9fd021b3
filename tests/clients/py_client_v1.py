#!/usr/bin/env python3
"""Real-client probe with the official Python MCP SDK, 1.x API (pinned: mcp 1.30.0).

usage: py_client_v1.py URL [--transport streamable|sse] [--tool NAME] [--args JSON]
                           [--resource URI] [--prompt NAME] [--prompt-args JSON] [--timeout S]

Run it with the 1.x venv's interpreter ($PY_SDK1 from tests/deps/env.sh). Same steps and output
as py_client.py (the 2.x probe), through the 1.x API: `ClientSession` over
`streamable_http_client(url, http_client=httpx.AsyncClient(...))` or `sse_client(url, headers=...)`.
1.x always performs the `initialize` handshake (there is no server/discover), so "mode" is
always "legacy". Empty --tool/--resource/--prompt skips that step.

env MCP_BEARER: sent as "Authorization: Bearer <t>" on every HTTP request.

stdout: the last line is one JSON object:
  {"ok", "client": "python-mcp-v1", "transport", "mode", "protocol", "era", "server", "session_id",
   "tools": [names], "call": {"name", "is_error", "texts", "types", "structured"},
   "resource": [texts], "prompt": [message texts]}
"protocol" is the version the server chose in its InitializeResult; "era" is always "legacy"
(1.x knows no other), kept so every client script reports one.
On failure: "ok": false, "error", "failed_step", reason on stderr, exit 1 (2 for bad usage).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from py_report import list_call_read_prompt, parse_json_options, probe_arguments, report_run


async def steps(session: ClientSession, opts: argparse.Namespace, out: dict[str, Any]) -> None:
    out["failed_step"] = "initialize"
    init = await session.initialize()
    out["protocol"] = init.protocolVersion
    out["era"] = "legacy"
    out["server"] = init.serverInfo.name

    await list_call_read_prompt(session, opts, out)


async def run(opts: argparse.Namespace, out: dict[str, Any]) -> None:
    headers = {}
    if os.environ.get("MCP_BEARER"):
        headers["Authorization"] = f"Bearer {os.environ['MCP_BEARER']}"
    out["failed_step"] = "connect"
    if opts.transport == "sse":
        async with sse_client(opts.url, headers=headers or None, timeout=30, sse_read_timeout=300) as (r, w):
            async with ClientSession(r, w) as s:
                await steps(s, opts, out)
    else:
        async with httpx.AsyncClient(headers=headers, follow_redirects=True,
                                     timeout=httpx.Timeout(30.0, read=300.0)) as http:
            async with streamable_http_client(opts.url, http_client=http) as (r, w, get_session_id):
                async with ClientSession(r, w) as s:
                    await steps(s, opts, out)
                    out["session_id"] = get_session_id()
    out.pop("failed_step")


def main() -> int:
    ap = probe_arguments(__doc__)
    ap.add_argument("--mode", choices=["legacy"], default="legacy", help="1.x only knows initialize")
    opts = ap.parse_args()
    if not parse_json_options("py_client_v1.py", opts):
        return 2

    out: dict[str, Any] = {
        "ok": False, "client": "python-mcp-v1", "transport": opts.transport, "mode": "legacy",
        "protocol": None, "era": None, "server": None, "session_id": None, "tools": None, "call": None,
        "resource": None, "prompt": None,
    }
    return report_run("py_client_v1.py", opts.timeout, out, lambda: run(opts, out))


if __name__ == "__main__":
    sys.exit(main())
