"""The dashboard's access token and security headers, as one ASGI middleware.

Without a token the dashboard trusts its network position (it binds to 127.0.0.1 by
default). With one, every request must carry it: ``Authorization: Bearer TOKEN`` (API
clients), the ``tuner_token`` cookie (browsers), or ``?token=TOKEN`` once, which sets that
cookie so the pages' own API calls carry it. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import json
from http.cookies import SimpleCookie
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

__all__ = ["SecurityMiddleware", "COOKIE"]

COOKIE = "tuner_token"

# Plotly's WebGL traces (parallel coordinates) compile shaders with ``new Function``, hence
# 'unsafe-eval'; no inline script is ever allowed, so injected markup cannot run.
_CSP = ("default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
_HEADERS = [
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class SecurityMiddleware:
    """Checks the token (when one is set) and adds security headers to every response."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], token: str | None = None) -> None:
        self.app = app
        self.token = token or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        set_cookie = False
        if self.token is not None:
            presented, from_query = _presented_tokens(scope)
            ok = any(hmac.compare_digest(t.encode(), self.token.encode()) for t in presented)
            if not ok:
                await _unauthorized(scope, send)
                return
            set_cookie = from_query

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += _HEADERS
                if set_cookie:
                    headers.append((b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _presented_tokens(scope: Scope) -> tuple[list[str], bool]:
    """Every token the request carries, and whether one came in the query string."""
    tokens: list[str] = []
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            text = value.decode("latin-1")
            if text.lower().startswith("bearer "):
                tokens.append(text[7:].strip())
        elif key == b"cookie":
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001 - a malformed cookie header carries no token
                continue
            if COOKIE in cookie:
                tokens.append(cookie[COOKIE].value)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    from_query = query.get("token", [])
    return tokens + from_query, bool(from_query)


async def _unauthorized(scope: Scope, send: Send) -> None:
    path = scope.get("path", "")
    if path.startswith("/api/") or path == "/openapi.json":
        body = json.dumps({"detail": "a valid token is required: send 'Authorization: Bearer TOKEN'"}).encode()
        ctype = b"application/json"
    else:
        body = (b"<!doctype html><title>tuner: token required</title><p>This dashboard needs its access token: "
                b"open it once as <code>?token=TOKEN</code>.</p>")
        ctype = b"text/html; charset=utf-8"
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", ctype), (b"www-authenticate", b"Bearer"), *_HEADERS]})
    await send({"type": "http.response.body", "body": body})
