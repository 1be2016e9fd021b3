#!/usr/bin/env python3
"""Headless OAuth client with the official Python MCP SDK, 2.x API (pinned: mcp 2.3.0).

usage: py_oauth.py MCP_URL [--redirect-uri URI] [--tool NAME] [--pause] [--timeout SECONDS]

Run it with the test venv's interpreter ($PY_SDK from tests/deps/env.sh).

The SDK's `OAuthClientProvider` does everything a hosted client does: the 401 on the first
MCP request, protected-resource metadata (RFC 9728), authorization-server metadata
(RFC 8414), dynamic client registration (RFC 7591, public client, PKCE S256), the
authorization request with `resource`, the token exchange, and refreshing the access token
when it has expired. Its redirect handler plays the browser of the relay's consent flow:

1. GET the authorization URL (redirects off, the consent cookie kept), expect the consent
   page (200) and read its code (`<p class=code id=code>`), the consent URL (meta refresh)
   and the form's `csrf` field;
2. print  {"event": "consent", "code", "consent_url", "authorize_url", "params", "page_status"}
   and read one line on stdin, what the person at the browser does:
     `poll`           the owner approves elsewhere (bridge terminal, `bridge approve`): poll
                      the consent URL with the cookie until it answers 302;
     `password PW`    submit the page's operator-password form (the csrf field + PW);
     `deny`           submit the page's Deny button;
3. take the `Location` of that 302: it must start with the redirect URI (nothing listens
   there; the Location is captured, never fetched) and carry exactly one `code`, `state`
   and `iss` (or an `error`).

Then it lists the tools and calls --tool (default test_simple_text) in a new MCP session.

With --pause, after that first session it prints {"event": "paused", "tokens": [...],
"token_expiry_time"} and waits for a stdin line (`resume`): meanwhile the test may restart
the relay. It then waits until the access token has expired and opens a second session
with the same provider, which must refresh the token (a new consent in that phase is a
failure).

stdout: events as JSON lines; the last line is one JSON object:
  {"ok": true, "client_id", "redirect_uri", "consents": [consent events + "approval",
   "location", "callback": {"code_len", "state_matches", "iss"}],
   "phases": [{"tools": [...], "call": {"is_error", "texts"}, "protocol"}],
   "tokens": [{"phase", "access_token", "refresh_token", "expires_in", "scope"}],
   "http": [[who ("client" or "browser"), method, path, status, phase], ...]}
On failure: the same with "ok": false and "error", reason on stderr, exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import re
import sys
import time
import traceback
from typing import Any
from urllib.parse import parse_qs, urlparse

import anyio
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from py_report import describe

CODE_RE = re.compile(r"<p class=code id=code>([^<]+)</p>")
REFRESH_RE = re.compile(r'http-equiv=refresh content="\d+;url=([^"]+)"')
CSRF_RE = re.compile(r'name=csrf value="([^"]+)"')


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, default=str), flush=True)


async def read_stdin_line() -> str:
    line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    if not line:
        raise RuntimeError("stdin closed while waiting for the test's instruction")
    return line.strip()


class Recorder:
    """Everything the run saw, for the summary."""

    def __init__(self) -> None:
        self.http: list[list[Any]] = []
        self.tokens: list[dict[str, Any]] = []
        self.consents: list[dict[str, Any]] = []
        self.phase = 1

    def hook(self, who: str):
        async def on_response(resp: httpx2.Response) -> None:
            self.http.append([who, resp.request.method, resp.request.url.path, resp.status_code, self.phase])

        return on_response


class MemStorage(TokenStorage):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.rec.tokens.append({
            "phase": self.rec.phase, "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token, "expires_in": tokens.expires_in,
            "scope": tokens.scope, "token_type": tokens.token_type,
        })

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def one(q: dict[str, list[str]], key: str) -> str | None:
    vals = q.get(key, [])
    if len(vals) > 1:
        raise RuntimeError(f"the redirect carries {key} {len(vals)} times")
    return vals[0] if vals else None


class Browser:
    """The user agent at the consent page (see the module doc)."""

    def __init__(self, rec: Recorder, redirect_uri: str) -> None:
        self.rec = rec
        self.redirect_uri = redirect_uri
        self.result: AuthorizationCodeResult | None = None
        self.forbidden = False

    async def redirect_handler(self, authorization_url: str) -> None:
        if self.forbidden:
            raise RuntimeError("a new consent was needed although the stored grant should have been refreshed")
        params = {k: v[0] for k, v in parse_qs(urlparse(authorization_url).query).items()}
        async with httpx2.AsyncClient(
            follow_redirects=False, timeout=30.0, event_hooks={"response": [self.rec.hook("browser")]}
        ) as http:
            page = await http.get(authorization_url)
            event: dict[str, Any] = {
                "event": "consent", "authorize_url": authorization_url, "params": params,
                "page_status": page.status_code,
            }
            if page.status_code != 200:
                raise RuntimeError(
                    f"the authorization endpoint answered {page.status_code} (Location "
                    f"{page.headers.get('location')!r}): {page.text[:300]}"
                )
            code, refresh, csrf = CODE_RE.search(page.text), REFRESH_RE.search(page.text), CSRF_RE.search(page.text)
            if not (code and refresh and csrf):
                raise RuntimeError(f"no code, refresh URL or csrf field on the consent page: {page.text[:500]}")
            consent_url = str(page.url.join(html.unescape(refresh.group(1))))
            set_cookie = page.headers.get("set-cookie", "")
            cookie = set_cookie.split(";", 1)[0]
            if "=" not in cookie:
                raise RuntimeError(f"the consent page set no cookie: {set_cookie!r}")
            event.update(code=html.unescape(code.group(1)), consent_url=consent_url, set_cookie=set_cookie)
            emit(event)
            headers = {"cookie": cookie}

            action = await read_stdin_line()
            event["approval"] = action.split(" ", 1)[0]
            if action == "poll":
                deadline = time.monotonic() + 60
                while True:
                    r = await http.get(consent_url, headers=headers)
                    if r.status_code != 200:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("the consent was not decided within 60 s")
                    await anyio.sleep(0.15)
            elif action.startswith("password ") or action == "deny":
                form = {"csrf": html.unescape(csrf.group(1))}
                if action == "deny":
                    form["action"] = "deny"
                else:
                    form.update(action="approve", password=action.split(" ", 1)[1])
                r = await http.post(consent_url, data=form, headers=headers)
            else:
                raise RuntimeError(f"unknown instruction {action!r}")
            if r.status_code != 302:
                raise RuntimeError(f"the consent URL answered {r.status_code}, not 302: {r.text[:300]}")
            location = r.headers["location"]
            event["location"] = location
            self.rec.consents.append(event)
            if not location.startswith(self.redirect_uri + "?"):
                raise RuntimeError(f"redirected to {location!r}, not to {self.redirect_uri}")
            q = parse_qs(urlparse(location).query)
            if "error" in q:
                raise RuntimeError(f"authorization error: {one(q, 'error')}: {one(q, 'error_description')}")
            got_code, state, iss = one(q, "code"), one(q, "state"), one(q, "iss")
            if not got_code:
                raise RuntimeError(f"no code in {location!r}")
            event["callback"] = {"code_len": len(got_code), "state_matches": state == params.get("state"), "iss": iss}
            self.result = AuthorizationCodeResult(code=got_code, state=state, iss=iss)

    async def callback_handler(self) -> AuthorizationCodeResult:
        if self.result is None:
            raise RuntimeError("no authorization result")
        result, self.result = self.result, None
        return result


async def session(url: str, oauth: OAuthClientProvider, rec: Recorder, tool: str) -> dict[str, Any]:
    http = httpx2.AsyncClient(
        auth=oauth, timeout=httpx2.Timeout(30.0, read=120.0), event_hooks={"response": [rec.hook("client")]}
    )
    async with http, Client(streamable_http_client(url, http_client=http)) as c:
        out: dict[str, Any] = {"protocol": c.protocol_version}
        out["tools"] = [t.name for t in (await c.list_tools()).tools]
        if tool:
            res = await c.call_tool(tool, {})
            out["call"] = {
                "is_error": bool(res.is_error),
                "texts": [x.text for x in res.content if isinstance(getattr(x, "text", None), str)],
            }
        return out


async def run(opts: argparse.Namespace, out: dict[str, Any], rec: Recorder) -> None:
    browser = Browser(rec, opts.redirect_uri)
    storage = MemStorage(rec)
    oauth = OAuthClientProvider(
        server_url=opts.url,
        client_metadata=OAuthClientMetadata(
            client_name="py-oauth-e2e",
            redirect_uris=[opts.redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )
    out["phases"].append(await session(opts.url, oauth, rec, opts.tool))
    out["client_id"] = storage.client.client_id if storage.client else None
    if not opts.pause:
        return
    emit({"event": "paused", "tokens": rec.tokens, "token_expiry_time": oauth.context.token_expiry_time})
    if await read_stdin_line() != "resume":
        raise RuntimeError("expected `resume`")
    rec.phase = 2
    browser.forbidden = True
    expiry = oauth.context.token_expiry_time or 0
    await anyio.sleep(max(0.0, expiry - time.time() + 0.3))
    out["expired_before_phase_2"] = not oauth.context.is_token_valid()
    out["phases"].append(await session(opts.url, oauth, rec, opts.tool))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("--redirect-uri", default="http://127.0.0.1:39999/callback")
    ap.add_argument("--tool", default="test_simple_text")
    ap.add_argument("--pause", action="store_true")
    ap.add_argument("--timeout", type=float, default=90.0)
    opts = ap.parse_args()
    rec = Recorder()
    out: dict[str, Any] = {"ok": False, "redirect_uri": opts.redirect_uri, "client_id": None, "phases": []}

    async def guarded() -> None:
        with anyio.fail_after(opts.timeout):
            await run(opts, out, rec)

    def finish() -> None:
        out.update(consents=rec.consents, tokens=rec.tokens, http=rec.http)
        emit(out)

    try:
        asyncio.run(guarded())
        out["ok"] = True
        finish()
        return 0
    except BaseException as e:  # noqa: BLE001 - report everything, including groups and timeouts
        if isinstance(e, KeyboardInterrupt):
            raise
        out["error"] = f"timeout after {opts.timeout:g}s" if isinstance(e, TimeoutError) else describe(e)
        traceback.print_exc()
        print(f"py_oauth.py: {out['error']}", file=sys.stderr)
        finish()
        return 1


if __name__ == "__main__":
    sys.exit(main())
