#!/usr/bin/env python3
"""Real-client probe with the official Python MCP SDK, 2.x API (pinned: mcp 2.3.0).

usage: py_client.py URL [--transport streamable|sse] [--mode auto|legacy|modern]
                        [--tool NAME] [--args JSON] [--resource URI] [--prompt NAME]
                        [--prompt-args JSON] [--elicit-answer TEXT] [--sampling-text TEXT]
                        [--log-level LEVEL] [--calls JSON] [--timeout SECONDS]

Run it with the test venv's interpreter ($PY_SDK from tests/deps/env.sh).

Connects (streamable: `streamable_http_client` over an `httpx2.AsyncClient`; sse: `sse_client`,
always mode="legacy" because legacy SSE servers never speak `server/discover`), then lists the
tools, calls --tool (default test_simple_text) with --args (default {}), reads --resource
(default test://static-text) and gets --prompt (default test_simple_prompt). Pass an empty
string to --tool/--resource/--prompt to skip that step (its key is then null).

--mode is the SDK's `Client(mode=...)`:
  auto    (the SDK default) POST `server/discover` first; a DiscoverResult offering 2026-07-28
          makes the connection stateless (every request carries the protocol version,
          client info and capabilities in `_meta`, no session); any JSON-RPC error or HTTP 4xx
          falls back to the `initialize` handshake;
  legacy  `initialize` handshake only (2025-11-25 offered);
  modern  mode="2026-07-28": adopt the stateless revision at once, no probe, no handshake (the SDK
          synthesizes a minimal DiscoverResult, so "server" is null).

--elicit-answer TEXT registers an elicitation callback (the client then declares the
elicitation capability) that accepts every form, filling each string property of the requested
schema with TEXT; --sampling-text TEXT registers a sampling callback answering TEXT (model
"py-client-test-model"). The SDK calls the same callbacks for a server->client request
(2025 era) and for each entry of an InputRequiredResult's inputRequests (2026-07-28: the call
is retried with inputResponses + requestState). Without them the client declares neither
capability.

--log-level LEVEL registers a logging callback (every notifications/message is kept in "logs")
and opts in to log messages at LEVEL and above on 2026-07-28 requests (`Client(log_level=...)`,
the `_meta` logLevel key); on a handshake-era connection the server's own setting decides (no
`logging/setLevel` is sent).

--calls JSON runs more steps on the same connection after the ones above: a JSON array of
  {"tool": NAME, "args": {...}, "progress": true|false}   a tools/call (with a progress callback
                                                         when "progress"); its error, if any,
                                                         is recorded and the next step runs
  {"pause": LABEL}                                       prints {"event": "paused", "label":
                                                         LABEL} and waits for a line on stdin
Each step's record goes to "steps": a call as {"tool", "is_error", "texts", "progress":
[{"progress", "total", "message"}], "error": null | "<reason>", "elapsed_ms"}, a pause as
{"pause": LABEL}.

env MCP_BEARER: sent as "Authorization: Bearer <t>" on every HTTP request.

stdout: the last line is one JSON object:
  {"ok": true, "transport", "mode", "sdk_mode", "protocol", "era": "modern"|"legacy", "server",
   "discover": {"source", "supported_versions", "capabilities", "instructions", "server_info",
                "ttl_ms", "cache_scope"} | null   (the adopted DiscoverResult; "source" is
                "server/discover", or "synthesized" in modern mode, where nothing was asked),
   "initialize": {"protocol_version", "capabilities", "instructions", "server_info"} | null,
   "tools": [names],
   "call": {"name", "is_error", "texts": [text items], "types": [content types], "structured"},
   "resource": [texts of the contents], "prompt": [text of each message],
   "elicitations": [{"message", "properties": [names], "answered": {...}}],
   "samplings": [{"texts": [message texts], "answered"}],
   "logs": [{"level", "logger", "data"}] (with --log-level), "steps": [...] (with --calls)}
"protocol" is the negotiated version (`Client.protocol_version`); "era" is "modern" for a
2026-07-28+ version, else "legacy".
On any failure (connect error, HTTP error, JSON-RPC error, timeout) it prints the same object
with "ok": false, "error": "<reason>", "failed_step": "<step>" and what it saw before, writes
the reason to stderr and exits 1 (2 for bad usage). A tool result with isError=true is an
observation, not a failure: check call.is_error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from py_report import (
    content_text,
    describe,
    list_call_read_prompt,
    parse_json_options,
    probe_arguments,
    report_run,
)

#: `--mode` value -> `Client(mode=...)`.
SDK_MODES = {"auto": "auto", "legacy": "legacy", "modern": MODERN_PROTOCOL_VERSIONS[-1]}


def dump(model: Any) -> Any:
    """JSON-able form of an SDK model (wire names), or None."""
    if model is None:
        return None
    if hasattr(model, "model_dump"):
        return model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return model


def schema_properties(schema: Any) -> dict[str, Any]:
    """The `properties` of an elicitation's requested schema (a model or a dict)."""
    raw = dump(schema) or {}
    props = raw.get("properties") if isinstance(raw, dict) else None
    return props if isinstance(props, dict) else {}


def make_elicitation_callback(answer: str, seen: list[dict[str, Any]]) -> Any:
    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        props = schema_properties(getattr(params, "requested_schema", None))
        content: dict[str, Any] = {}
        for name, prop in props.items():
            kind = prop.get("type") if isinstance(prop, dict) else None
            if kind in (None, "string"):
                content[name] = answer
        seen.append({"message": getattr(params, "message", None), "properties": sorted(props),
                     "answered": content})
        return types.ElicitResult(action="accept", content=content)

    return elicit


def make_sampling_callback(text: str, seen: list[dict[str, Any]]) -> Any:
    async def sample(context: Any, params: Any) -> types.CreateMessageResult:
        texts = []
        for m in getattr(params, "messages", []) or []:
            blocks = m.content if isinstance(m.content, list) else [m.content]
            texts.extend(content_text(b) for b in blocks)
        seen.append({"texts": texts, "answered": text})
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=text),
            model="py-client-test-model",
            stop_reason="endTurn",
        )

    return sample


def make_logging_callback(seen: list[dict[str, Any]]) -> Any:
    async def log(params: Any) -> None:
        seen.append({"level": params.level, "logger": params.logger, "data": params.data})

    return log


async def run_steps(c: Client, steps: list[dict[str, Any]], out: dict[str, Any]) -> None:
    """The --calls steps, each recorded in out["steps"]."""
    out["steps"] = []
    for step in steps:
        if "pause" in step:
            out["failed_step"] = f"pause {step['pause']}"
            print(json.dumps({"event": "paused", "label": step["pause"]}), flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            out["steps"].append({"pause": step["pause"]})
            continue
        name = step["tool"]
        out["failed_step"] = f"step {name}"
        record: dict[str, Any] = {"tool": name, "is_error": None, "texts": None, "progress": [],
                                  "error": None, "elapsed_ms": None}

        async def progress(value: float, total: float | None, message: str | None,
                           record: dict[str, Any] = record) -> None:
            record["progress"].append({"progress": value, "total": total, "message": message})

        started = anyio.current_time()
        try:
            r = await c.call_tool(name, step.get("args") or {},
                                  progress_callback=progress if step.get("progress") else None)
            record["is_error"] = bool(r.is_error)
            record["texts"] = [x.text for x in r.content if isinstance(getattr(x, "text", None), str)]
        except Exception as e:  # noqa: BLE001 - an error is this step's observation
            record["error"] = describe(e)
        record["elapsed_ms"] = round((anyio.current_time() - started) * 1000)
        out["steps"].append(record)


def describe_session(c: Client, out: dict[str, Any]) -> None:
    """Fill protocol/era/server and what the negotiation installed (discover or initialize)."""
    out["protocol"] = c.protocol_version
    out["era"] = "modern" if c.protocol_version in MODERN_PROTOCOL_VERSIONS else "legacy"
    out["server"] = c.server_info.name if c.server_info else None
    session = c.session
    disc = session.discover_result
    if disc is not None:
        out["discover"] = {
            # mode=modern pins the version without a probe: the SDK makes this result up.
            "source": "synthesized" if out.get("mode") == "modern" else "server/discover",
            "supported_versions": list(disc.supported_versions),
            "capabilities": dump(disc.capabilities),
            "instructions": disc.instructions,
            "server_info": dump(c.server_info),
            "ttl_ms": getattr(disc, "ttl_ms", None),
            "cache_scope": getattr(disc, "cache_scope", None),
        }
    init = session.initialize_result
    if init is not None:
        out["initialize"] = {
            "protocol_version": init.protocol_version,
            "capabilities": dump(init.capabilities),
            "instructions": init.instructions,
            "server_info": dump(init.server_info),
        }


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
    out["sdk_mode"] = SDK_MODES[mode]

    callbacks: dict[str, Any] = {}
    if opts.elicit_answer is not None:
        out["elicitations"] = []
        callbacks["elicitation_callback"] = make_elicitation_callback(opts.elicit_answer, out["elicitations"])
    if opts.sampling_text is not None:
        out["samplings"] = []
        callbacks["sampling_callback"] = make_sampling_callback(opts.sampling_text, out["samplings"])

    if opts.log_level is not None:
        out["logs"] = []
        callbacks["logging_callback"] = make_logging_callback(out["logs"])
        callbacks["log_level"] = opts.log_level

    out["failed_step"] = "connect"
    try:
        async with Client(transport, mode=SDK_MODES[mode], **callbacks) as c:
            describe_session(c, out)
            await list_call_read_prompt(c, opts, out)
            if opts.calls:
                await run_steps(c, opts.calls, out)
                out["failed_step"] = "close"
        out.pop("failed_step")
    finally:
        if http is not None:
            await http.aclose()


def main() -> int:
    ap = probe_arguments(__doc__)
    ap.add_argument("--mode", choices=sorted(SDK_MODES), default="auto",
                    help="streamable only (sse is always legacy)")
    ap.add_argument("--elicit-answer", default=None,
                    help="answer elicitations: accept, every string property = this text")
    ap.add_argument("--sampling-text", default=None, help="answer sampling requests with this text")
    ap.add_argument("--log-level", default=None,
                    choices=["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"],
                    help="keep log messages (2026-07-28: opt in at this level)")
    ap.add_argument("--calls", default=None, help="more steps, as a JSON array (see above)")
    opts = ap.parse_args()
    if not parse_json_options("py_client.py", opts):
        return 2
    try:
        opts.calls = json.loads(opts.calls) if opts.calls else None
        if opts.calls is not None and not (
            isinstance(opts.calls, list)
            and all(isinstance(x, dict) and ("tool" in x or "pause" in x) for x in opts.calls)
        ):
            raise ValueError("must be an array of {\"tool\": ...} or {\"pause\": ...} objects")
    except ValueError as e:
        print(f"py_client.py: bad --calls: {e}", file=sys.stderr)
        return 2

    out: dict[str, Any] = {
        "ok": False, "client": "python-mcp", "transport": opts.transport, "mode": None, "sdk_mode": None,
        "protocol": None, "era": None, "server": None, "discover": None, "initialize": None,
        "tools": None, "call": None, "resource": None, "prompt": None, "elicitations": None, "samplings": None,
        "logs": None, "steps": None,
    }
    return report_run("py_client.py", opts.timeout, out, lambda: run(opts, out))


if __name__ == "__main__":
    sys.exit(main())
