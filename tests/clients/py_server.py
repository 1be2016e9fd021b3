#!/usr/bin/env python3
"""A stdio MCP server written with the official Python SDK 2.x (`mcp.server.mcpserver.MCPServer`,
the SDK's FastMCP), used as a real third-party server behind the bridge.

usage: py_server.py        (stdio; run with the test venv's interpreter, $PY_SDK)

The SDK's stdio runner is dual-era: it fixes the protocol era on the first message and, on a
connection opened with `initialize`, refuses requests that carry the 2026-07-28 `_meta`
envelope. Tools:
  test_simple_text            -> "This is a simple text response for testing."
  echo(message)               -> "Echo: <message>"
  era()                       -> the protocol version this connection negotiated, as the server sees it
  count(steps)                -> reports progress 1..steps, then "counted <steps>"
  ask_name()                  -> asks the client for a name (elicitation), returns "hello <name>"
  slow(ms, tag)               -> waits ms milliseconds, then "done <tag>"
  trigger_list_changed()      -> sends notifications/tools/list_changed, then "ok"
Resource test://static-text; prompt test_simple_prompt.
"""

import anyio
from pydantic import BaseModel

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("py-sdk-server", instructions="A Python SDK 2.x server for the tunnel tests.")


@server.tool()
def test_simple_text() -> str:
    """Returns a fixed text."""
    return "This is a simple text response for testing."


@server.tool()
def echo(message: str) -> str:
    """Echoes the message."""
    return f"Echo: {message}"


@server.tool()
def era(ctx: Context) -> str:
    """The protocol version of this connection, as the server sees it."""
    return str(ctx.protocol_version)


@server.tool()
async def count(steps: int, ctx: Context) -> str:
    """Reports progress for each step."""
    for i in range(1, steps + 1):
        await ctx.report_progress(i, steps, f"step {i}")
    return f"counted {steps}"


@server.tool()
async def slow(ms: int, tag: str) -> str:
    """Answers after `ms` milliseconds."""
    await anyio.sleep(ms / 1000)
    return f"done {tag}"


@server.tool()
async def trigger_list_changed(ctx: Context) -> str:
    """Announces that the tool list changed (on this handshake-era connection)."""
    await ctx.session.send_tool_list_changed()
    return "ok"


class Name(BaseModel):
    name: str


@server.tool()
async def ask_name(ctx: Context) -> str:
    """Asks the client for a name."""
    answer = await ctx.elicit("What is your name?", Name)
    if answer.action == "accept":
        return f"hello {answer.data.name}"
    return f"no name ({answer.action})"


@server.resource("test://static-text")
def static_text() -> str:
    """A fixed text resource."""
    return "This is the content of the static text resource."


@server.prompt()
def test_simple_prompt() -> str:
    """A fixed prompt."""
    return "This is a simple prompt for testing."


if __name__ == "__main__":
    server.run()
