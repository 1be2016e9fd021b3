#!/usr/bin/env python3
"""Real-client probe with the official Python MCP SDK, 2.x API (pinned: mcp 2.3.0).

usage: py_client.py URL [--transport streamable|sse] [--mode auto|legacy]
                        [--tool NAME] [--args JSON] [--resource URI] [--prompt NAME]
                        [--prompt-args JSON] [--timeout SECONDS]

Run it with the test venv's interpreter ($PY_SDK from tests/deps/env.sh).

Connects (streamable: `streamable_http_client` over an `httpx2.AsyncClient`; sse: `sse_client`,
always mode="legacy" because legacy SSE servers never speak `server/discover`), then lists the
tools, calls --tool (default test_simple_text) with --args (default {}), reads --resource
(default test://static-text) and gets --prompt (default test_simple_prompt). Pass an empty
string to --tool/--resource/--prompt to skip that step (its key is then null).

env MCP_BEARER: sent as "Authorization: Bearer <t>" on every HTTP request.

stdout: the last line is one JSON object:
  {"ok": true, "transport", "mode", "protocol", "server", "tools": [names],
   "call": {"name", "is_error", "texts": [text items], "types": [content types], "structured"},
   "resource": [texts of the contents], "prompt": [text of each message]}
On any failure (connect error, HTTP error, JSON-RPC error, timeout) it prints the same object
with "ok": false, "error": "<reason>", "failed_step": "<step>" and what it saw before, writes
the reason to stderr and exits 1 (2 for bad usage). A tool result with isError=true is an
observation, not a failure: check call.is_error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import traceback
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client


def content_text(item: Any) -> str:
    """Text of a content block; other block types become "[type]" placeholders."""
    text = getattr(item, "text", None)
    if isinstance(text, str):
        return text
    res = getattr(item, "resource", None)  # embedded resource
    if res is not None:
        rt = getattr(res, "text", None)
        if isinstance(rt, str):
            return rt
    return f"[{getattr(item, 'type', type(item).__name__)}]"


def resource_text(c: Any) -> str:
    text = getattr(c, "text", None)
    if isinstance(text, str):
        return text
    blob = getattr(c, "blob", None)
    return f"[blob {len(blob) if blob else 0} base64 chars]"


def describe(exc: BaseException) -> str:
    """Flatten exception groups into 'Type: message' leaves."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        subs = getattr(e, "exceptions", None)
        if subs:
            for s in subs:
                walk(s)
        else:
            leaves.append(e)

    walk(exc)
    parts = []
    for e in leaves:
        msg = str(e) or repr(e)
        resp = getattr(e, "response", None)
        status = getattr(resp, "status_code", None)
        if status is not None and str(status) not in msg:
            msg = f"HTTP {status}: {msg}"
        parts.append(f"{type(e).__name__}: {msg}")
    return "; ".join(parts)


async def run(opts: argparse.Namespace, out: dict[str, Any]) -> None:
    headers = {}
    if os.environ.get("MCP_BEARER"):
        headers["Authorization"] = f"Bearer {os.environ['MCP_BEARER']}"

    if opts.transport == "sse":
        mode = "legacy"
        transport = sse_client(opts.url, headers=headers or None, timeout=30.0, sse_read_timeout=300.0)
        http = None
    else:
        mode = opts.mode
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))
        transport = streamable_http_client(opts.url, http_client=http)
    out["mode"] = mode

    out["failed_step"] = "connect"
    try:
        async with Client(transport, mode=mode) as c:
            out["protocol"] = c.protocol_version
            out["server"] = c.server_info.name if c.server_info else None

            out["failed_step"] = "tools/list"
            tools = await c.list_tools()
            out["tools"] = [t.name for t in tools.tools]

            if opts.tool:
                out["failed_step"] = "tools/call"
                res = await c.call_tool(opts.tool, opts.args)
                out["call"] = {
                    "name": opts.tool,
                    "is_error": bool(res.is_error),
                    "texts": [x.text for x in res.content if isinstance(getattr(x, "text", None), str)],
                    "types": [getattr(x, "type", type(x).__name__) for x in res.content],
                    "structured": getattr(res, "structured_content", None),
                }

            if opts.resource:
                out["failed_step"] = "resources/read"
                rr = await c.read_resource(opts.resource)
                out["resource"] = [resource_text(x) for x in rr.contents]

            if opts.prompt:
                out["failed_step"] = "prompts/get"
                pr = await c.get_prompt(opts.prompt, opts.prompt_args)
                out["prompt"] = [content_text(m.content) for m in pr.messages]

            out["failed_step"] = "close"
        out.pop("failed_step")
    finally:
        if http is not None:
            await http.aclose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("--transport", choices=["streamable", "sse"], default="streamable")
    ap.add_argument("--mode", choices=["auto", "legacy"], default="auto",
                    help="streamable only (sse is always legacy)")
    ap.add_argument("--tool", default="test_simple_text")
    ap.add_argument("--args", default="{}", help="tool arguments as a JSON object")
    ap.add_argument("--resource", default="test://static-text")
    ap.add_argument("--prompt", default="test_simple_prompt")
    ap.add_argument("--prompt-args", default=None, help="prompt arguments as a JSON object")
    ap.add_argument("--timeout", type=float, default=60.0, help="overall deadline in seconds")
    opts = ap.parse_args()
    try:
        opts.args = json.loads(opts.args)
        opts.prompt_args = json.loads(opts.prompt_args) if opts.prompt_args else None
        if not isinstance(opts.args, dict) or (opts.prompt_args is not None and not isinstance(opts.prompt_args, dict)):
            raise ValueError("must be a JSON object")
    except ValueError as e:
        print(f"py_client.py: bad --args/--prompt-args: {e}", file=sys.stderr)
        return 2

    out: dict[str, Any] = {
        "ok": False, "client": "python-mcp", "transport": opts.transport, "mode": None,
        "protocol": None, "server": None, "tools": None, "call": None, "resource": None, "prompt": None,
    }

    async def guarded() -> None:
        with anyio.fail_after(opts.timeout):
            await run(opts, out)

    try:
        asyncio.run(guarded())
        out["ok"] = True
        print(json.dumps(out, default=str))
        return 0
    except BaseException as e:  # noqa: BLE001 - report everything, including groups/timeouts
        if isinstance(e, KeyboardInterrupt):
            raise
        reason = "timeout after %gs" % opts.timeout if isinstance(e, TimeoutError) else describe(e)
        out["error"] = reason
        if os.environ.get("PY_CLIENT_TRACEBACK"):
            traceback.print_exc()
        print(f"py_client.py: failed at {out.get('failed_step')}: {reason}", file=sys.stderr)
        print(json.dumps(out, default=str))
        return 1


if __name__ == "__main__":
    sys.exit(main())
