"""What the Python client scripts share (py_client.py, py_client_v1.py, py_oauth.py): the
texts of content blocks and resources, the probe's list/call/read/prompt steps, errors
flattened into one line, the probe's common options, and the run that reports one JSON
object on the last stdout line.

Imported from the scripts' own directory, so it works under either SDK's interpreter; it
needs only the standard library and anyio (which both SDKs depend on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import traceback
from typing import Any, Awaitable, Callable

import anyio


def content_text(item: Any) -> str:
    """Text of a content block; other block types become "[type]" placeholders."""
    text = getattr(item, "text", None)
    if isinstance(text, str):
        return text
    res = getattr(item, "resource", None)  # embedded resource
    if res is not None and isinstance(getattr(res, "text", None), str):
        return res.text
    return f"[{getattr(item, 'type', type(item).__name__)}]"


def resource_text(c: Any) -> str:
    """Text of a resource's contents; a blob becomes a placeholder with its size."""
    text = getattr(c, "text", None)
    if isinstance(text, str):
        return text
    blob = getattr(c, "blob", None)
    return f"[blob {len(blob) if blob else 0} base64 chars]"


def first_attr(obj: Any, *names: str, default: Any = None) -> Any:
    """The first of these attributes `obj` has (the 1.x SDK's camelCase or 2.x's names)."""
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


async def list_call_read_prompt(session: Any, opts: argparse.Namespace, out: dict[str, Any]) -> None:
    """tools/list, then tools/call of --tool, resources/read of --resource and prompts/get
    of --prompt (each skipped when empty) on a connected session of either SDK, into `out`
    ("tools", "call", "resource", "prompt"); "failed_step" says where it is."""
    out["failed_step"] = "tools/list"
    out["tools"] = [t.name for t in (await session.list_tools()).tools]
    if opts.tool:
        out["failed_step"] = "tools/call"
        r = await session.call_tool(opts.tool, opts.args)
        out["call"] = {
            "name": opts.tool,
            "is_error": bool(first_attr(r, "is_error", "isError")),
            "texts": [x.text for x in r.content if isinstance(getattr(x, "text", None), str)],
            "types": [getattr(x, "type", type(x).__name__) for x in r.content],
            "structured": first_attr(r, "structured_content", "structuredContent"),
        }
    if opts.resource:
        out["failed_step"] = "resources/read"
        rr = await session.read_resource(opts.resource)
        out["resource"] = [resource_text(x) for x in rr.contents]
    if opts.prompt:
        out["failed_step"] = "prompts/get"
        pr = await session.get_prompt(opts.prompt, opts.prompt_args)
        out["prompt"] = [content_text(m.content) for m in pr.messages]
    out["failed_step"] = "close"


def describe(exc: BaseException) -> str:
    """Flatten exception groups into 'Type: message' leaves (with the HTTP status, if any)."""
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
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status is not None and str(status) not in msg:
            msg = f"HTTP {status}: {msg}"
        parts.append(f"{type(e).__name__}: {msg}")
    return "; ".join(parts)


def probe_arguments(doc: str) -> argparse.ArgumentParser:
    """The options every probe script takes: URL, transport, the tool, resource and prompt
    to try (empty: skipped) and the overall deadline."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("--transport", choices=["streamable", "sse"], default="streamable")
    ap.add_argument("--tool", default="test_simple_text")
    ap.add_argument("--args", default="{}", help="tool arguments as a JSON object")
    ap.add_argument("--resource", default="test://static-text")
    ap.add_argument("--prompt", default="test_simple_prompt")
    ap.add_argument("--prompt-args", default=None, help="prompt arguments as a JSON object")
    ap.add_argument("--timeout", type=float, default=60.0, help="overall deadline in seconds")
    return ap


def parse_json_options(script: str, opts: argparse.Namespace) -> bool:
    """Turns --args and --prompt-args into JSON objects; False (after saying why) when one
    is not."""
    try:
        opts.args = json.loads(opts.args)
        opts.prompt_args = json.loads(opts.prompt_args) if opts.prompt_args else None
        if not isinstance(opts.args, dict) or (
            opts.prompt_args is not None and not isinstance(opts.prompt_args, dict)
        ):
            raise ValueError("must be a JSON object")
    except ValueError as e:
        print(f"{script}: bad --args/--prompt-args: {e}", file=sys.stderr)
        return False
    return True


def report_run(
    script: str,
    timeout: float,
    out: dict[str, Any],
    run: Callable[[], Awaitable[None]],
) -> int:
    """Runs `run()` within `timeout` seconds and prints `out` as the last line, with
    "ok" true, or false with "error" (also on stderr, naming out["failed_step"]); the exit
    code."""

    async def guarded() -> None:
        with anyio.fail_after(timeout):
            await run()

    try:
        asyncio.run(guarded())
        out["ok"] = True
        print(json.dumps(out, default=str))
        return 0
    except BaseException as e:  # noqa: BLE001 - report everything, including groups/timeouts
        if isinstance(e, KeyboardInterrupt):
            raise
        reason = "timeout after %gs" % timeout if isinstance(e, TimeoutError) else describe(e)
        out["error"] = reason
        if os.environ.get("PY_CLIENT_TRACEBACK"):
            traceback.print_exc()
        print(f"{script}: failed at {out.get('failed_step')}: {reason}", file=sys.stderr)
        print(json.dumps(out, default=str))
        return 1
