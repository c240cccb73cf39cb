"""The web application: routes, the session and guard middleware, error pages, static files."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from orchestrator.web.errors import HANDLERS
from orchestrator.web.pages import forms, hosts, login, project, projects, runs, viewers
from orchestrator.web.security import GuardMiddleware
from orchestrator.web.settings import WebSettings

STATIC = Path(__file__).with_name("static")
SESSION_COOKIE = "orch_session"


def create_app(settings: WebSettings) -> Starlette:
    """The ASGI application for ``settings`` (what ``orch web`` serves with uvicorn)."""
    routes = [*login.ROUTES, *projects.ROUTES, *project.ROUTES, *runs.ROUTES, *forms.ROUTES, *viewers.ROUTES,
              *hosts.ROUTES,
              Mount("/static", app=StaticFiles(directory=STATIC), name="static")]
    middleware = [
        Middleware(SessionMiddleware, secret_key=settings.secret, session_cookie=SESSION_COOKIE,
                   same_site="strict", https_only=False, max_age=12 * 3600),
        Middleware(GuardMiddleware, allowed_hosts=settings.allowed_hosts),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=HANDLERS)  # type: ignore[arg-type]
    app.state.settings = settings
    return app
