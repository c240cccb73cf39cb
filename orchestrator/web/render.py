"""Templates (Jinja2, autoescaped) and the small filters every page uses."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from orchestrator import __version__
from orchestrator.app.serialize import as_utc
from orchestrator.cli.output import format_duration, human_bytes
from orchestrator.web.security import csrf_token

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
STATE_ORDER = ("running", "queued", "failed", "finished", "cancelled", "created")


def _ago(value: datetime | None) -> str:
    when = as_utc(value)
    if when is None:
        return "-"
    seconds = (datetime.now(UTC) - when).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return when.strftime("%Y-%m-%d")


def _time(value: datetime | None) -> str:
    when = as_utc(value)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC") if when else "-"


TEMPLATES.env.filters.update(duration=format_duration, bytes=human_bytes, ago=_ago, time=_time)
TEMPLATES.env.globals.update(version=__version__, state_order=STATE_ORDER)


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page (or an htmx fragment) with the session's CSRF token in its context."""
    return TEMPLATES.TemplateResponse(request, template, {"csrf": csrf_token(request), **context},
                                      status_code=status_code)
