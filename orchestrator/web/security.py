"""Who may use the server, and how a request proves it came from our own pages.

- **Login**: a token printed when the server starts (``/login?token=...`` from the printed
  URL, or typed into the login form) puts ``user`` in the signed session cookie. Every route
  but the login page and the static files asks for it.
- **CSRF**: each session gets a random token; every request that changes state (POST, PUT,
  PATCH, DELETE) must send it back as the ``X-CSRF-Token`` header: every page sends its
  forms with htmx, which adds it (``hx-headers`` on ``<body>``). A cross-site form cannot set a
  header. The session cookie is ``SameSite=Strict`` as well.
- **Host header**: only the names in :attr:`WebSettings.allowed_hosts` (DNS rebinding).
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_PATHS = ("/login", "/static/")


def token_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get(CSRF_FIELD)
    if not token:
        token = request.session[CSRF_FIELD] = secrets.token_urlsafe(24)
    return str(token)


class GuardMiddleware:
    """Host header, login and CSRF checks, before any route runs (inside the session middleware)."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # no route takes one yet: refused unless logged in from here
            if not self._host_allowed(Headers(scope=scope).get("host", "")) or not scope.get("session", {}).get("user"):
                await send({"type": "websocket.close", "code": 1008})
                return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        refusal = await self._refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _host_allowed(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host  # name[:port], [::1][:port]
        return name in self.allowed_hosts

    async def _refusal(self, request: Request) -> Response | None:
        host = request.headers.get("host", "")
        if not self._host_allowed(host):
            return PlainTextResponse(f"host {host!r} is not served here", status_code=400)
        path = request.url.path
        if path.startswith(OPEN_PATHS):
            return None
        if not request.session.get("user"):
            if request.method in UNSAFE_METHODS or request.headers.get("hx-request"):
                return PlainTextResponse("log in first", status_code=401)
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        if request.method in UNSAFE_METHODS:
            given = request.headers.get(CSRF_HEADER)
            if not token_matches(given, str(request.session.get(CSRF_FIELD, ""))):
                return PlainTextResponse("missing or wrong CSRF token: reload the page", status_code=403)
        return None
