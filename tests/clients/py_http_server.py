#!/usr/bin/env python3
"""An MCP server served over HTTP, written with the official Python SDK 2.x (`MCPServer`, the
SDK's FastMCP; pinned: mcp 2.3.0), used as a real third-party HTTP upstream of
`bridge run --upstream URL`.

usage: py_http_server.py --port N [--transport streamable-http|sse] [--host 127.0.0.1]

Run it with the test venv's interpreter ($PY_SDK from tests/deps/env.sh). It serves, on
http://HOST:PORT (uvicorn, DNS-rebinding protection on: Host must be a loopback name):
  streamable-http  POST/GET/DELETE /mcp             (sessions; the SDK's dual-era transport)
  sse              GET /sse (first event `endpoint`: /messages/?session_id=...),
                   POST /messages/?session_id=...   (the 2024-11-05 HTTP+SSE transport)
The port is the caller's to choose, so a test can kill the server and start it again on
the same port (uvicorn binds with SO_REUSEADDR).

Tools:
  echo(message)            -> "Echo: <message>"
  add(a, b)                -> "<a + b>"
  count(steps, delay_ms)   -> progress 1..steps (total steps, message "step i"), each after
                              delay_ms, then "counted <steps>"
  shout(tag)               -> log messages "info <tag>" (info) and "warning <tag>" (warning),
                              then "shouted <tag>"
  sample(prompt)           -> asks the client for a completion (sampling/createMessage with
                              the one user message <prompt>), then "sampled: <its text>"
  ask_name(question)       -> asks the client for a name (elicitation, the message is
                              <question>, default "What is your name?"), then "hello <name>"
                              (or "no name (<action>)")
  header(name)             -> the value of the HTTP request header <name> that carried this
                              call (lower case), or "(none)"
  slow(ms, tag)            -> prints "slow started <tag>" on stdout, waits ms milliseconds,
                              then "done <tag>"
  rendezvous(tag, peers, timeout_ms)
                           -> waits until `peers` calls of this tool (this one included)
                              are running at once (or "rendezvous timeout <tag>" after
                              timeout_ms), then, while all of them still run, logs
                              "rendezvous <tag>" (info), asks the client for a completion of
                              "sample <tag>" and for a name with the message "name <tag>",
                              and, once every peer got its answers, returns
                              "met <tag>: sampled <text>, name <name>"
Stdout: "slow started <tag>" lines only (flushed), for tests that must act while a call
runs; uvicorn's own log goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import anyio
import mcp_types as types
from pydantic import BaseModel

from mcp.server.mcpserver import Context, MCPServer

# Sampling and logging are deprecated in 2026-07-28 (the SDK warns on each use); this server
# is reached through `initialize` sessions, where both are current.
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*deprecated.*")

server = MCPServer(
    "py-http-server",
    instructions="A Python SDK 2.x server over HTTP for the tunnel's upstream tests.",
    log_level="WARNING",
)


class Name(BaseModel):
    name: str


@server.tool()
def echo(message: str) -> str:
    """Echoes the message."""
    return f"Echo: {message}"


@server.tool()
def add(a: int, b: int) -> str:
    """Adds two numbers."""
    return str(a + b)


@server.tool()
async def count(steps: int, ctx: Context, delay_ms: int = 0) -> str:
    """Reports progress for each step."""
    for i in range(1, steps + 1):
        if delay_ms:
            await anyio.sleep(delay_ms / 1000)
        await ctx.report_progress(i, steps, f"step {i}")
    return f"counted {steps}"


@server.tool()
async def shout(tag: str, ctx: Context) -> str:
    """Sends two log messages naming the tag."""
    await ctx.info(f"info {tag}")
    await ctx.warning(f"warning {tag}")
    return f"shouted {tag}"


async def ask_completion(ctx: Context, prompt: str) -> str:
    """The text of the client's answer to a sampling request of `prompt`."""
    result = await ctx.session.create_message(
        messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
        max_tokens=50,
        related_request_id=ctx.request_id,
    )
    blocks = result.content if isinstance(result.content, list) else [result.content]
    return "".join(getattr(b, "text", "") for b in blocks)


@server.tool()
async def sample(prompt: str, ctx: Context) -> str:
    """Asks the client's model for a completion."""
    return f"sampled: {await ask_completion(ctx, prompt)}"


async def ask_for_name(ctx: Context, question: str) -> str:
    answer = await ctx.elicit(question, Name)
    if answer.action == "accept":
        return answer.data.name
    return f"no name ({answer.action})"


@server.tool()
async def ask_name(ctx: Context, question: str = "What is your name?") -> str:
    """Asks the client for a name."""
    name = await ask_for_name(ctx, question)
    return name if name.startswith("no name") else f"hello {name}"


@server.tool()
def header(name: str, ctx: Context) -> str:
    """The value of an HTTP header of the request that carried this call."""
    headers = ctx.headers or {}
    return headers.get(name.lower(), "(none)")


@server.tool()
async def slow(ms: int, tag: str) -> str:
    """Answers after `ms` milliseconds; says on stdout that it started."""
    print(f"slow started {tag}", flush=True)
    await anyio.sleep(ms / 1000)
    return f"done {tag}"


WIDGET_URI = "ui://widget/board.html"
# The origin the widget loads its script and style from (a local asset server), as a
# ChatGPT Apps developer's server names it; WIDGET_ASSETS overrides the usual one.
ASSETS = os.environ.get("WIDGET_ASSETS", "http://127.0.0.1:4444")
WIDGET_HTML = (
    f'<!doctype html><link rel="stylesheet" href="{ASSETS}/board.css">'
    f'<div id="board">waiting for board.js</div>'
    f'<script type="module" src="{ASSETS}/board.js"></script>'
)


@server.tool(
    meta={
        "openai/outputTemplate": WIDGET_URI,
        "openai/widgetAccessible": True,
        "ui": {"resourceUri": WIDGET_URI},
    }
)
def board(title: str) -> str:
    """A ChatGPT Apps / MCP Apps tool: its result is shown in the widget template."""
    return f"board {title}"


@server.resource(
    WIDGET_URI,
    mime_type="text/html+skybridge",
    meta={
        "openai/widgetCSP": {"resource_domains": [ASSETS], "connect_domains": [ASSETS]},
        "ui": {"csp": {"resourceDomains": [ASSETS], "connectDomains": [ASSETS]}},
    },
)
def board_widget() -> str:
    """The widget template of `board`."""
    return WIDGET_HTML


class Meeting:
    """Calls of `rendezvous` waiting for each other: one event per group size."""

    def __init__(self) -> None:
        self.arrived = 0
        self.left = 0
        self.all_here = anyio.Event()
        self.all_answered = anyio.Event()


meetings: dict[int, Meeting] = {}


@server.tool()
async def rendezvous(tag: str, peers: int, ctx: Context, timeout_ms: int = 30000) -> str:
    """Waits for `peers` concurrent calls, then logs, samples and elicits while all run."""
    meeting = meetings.setdefault(peers, Meeting())
    meeting.arrived += 1
    if meeting.arrived >= peers:
        meeting.all_here.set()
    with anyio.move_on_after(timeout_ms / 1000) as scope:
        await meeting.all_here.wait()
    if scope.cancelled_caught:
        return f"rendezvous timeout {tag}"
    await ctx.info(f"rendezvous {tag}")
    text = await ask_completion(ctx, f"sample {tag}")
    name = await ask_for_name(ctx, f"name {tag}")
    meeting.left += 1
    if meeting.left >= peers:
        meeting.all_answered.set()
        meetings.pop(peers, None)
    with anyio.move_on_after(timeout_ms / 1000):
        await meeting.all_answered.wait()
    return f"met {tag}: sampled {text}, name {name}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--transport", choices=["streamable-http", "sse"], default="streamable-http")
    opts = ap.parse_args()
    server.run(opts.transport, host=opts.host, port=opts.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
