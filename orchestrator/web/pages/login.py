"""Logging in with the token the server printed, and out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from orchestrator.web.render import page
from orchestrator.web.security import token_matches


def _next(request: Request, value: object) -> str:
    """Where to go after logging in: a path of this server only (never another site)."""
    target = value if isinstance(value, str) else "/"
    return target if target.startswith("/") and not target.startswith("//") else "/"


async def login(request: Request) -> Response:
    settings = request.app.state.settings
    if request.method == "POST":
        form = await request.form()
        given, target = form.get("token"), _next(request, form.get("next"))
    else:
        given, target = request.query_params.get("token"), _next(request, request.query_params.get("next"))
    if given is not None:
        if token_matches(str(given), settings.token):
            request.session.clear()
            request.session["user"] = "owner"
            return RedirectResponse(target, status_code=303)
        return page(request, "login.html", status_code=401, next=target,
                    message="That is not the token this server printed when it started.")
    return page(request, "login.html", next=target, message=None)


async def logout(request: Request) -> Response:
    request.session.clear()
    if request.headers.get("hx-request"):  # htmx: have the browser go to the login page
        return Response(status_code=204, headers={"HX-Redirect": "/login"})
    return RedirectResponse("/login", status_code=303)


ROUTES = [Route("/login", login, methods=["GET", "POST"]), Route("/logout", logout, methods=["POST"])]
