"""What the browser sees when something goes wrong: the message, never a traceback.

The application layer's errors carry what is at fault (a run, a param, a file) and an HTTP
status (:func:`orchestrator.app.errors.http_status`); anything else is logged here with its
traceback and shown as an internal error with the time to look for in the server's log.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.app.errors import http_status
from orchestrator.errors import OrchestratorError
from orchestrator.web.render import page

log = logging.getLogger("orchestrator.web")


def _error(request: Request, status: int, message: str) -> Response:
    if request.headers.get("hx-request"):  # a fragment: the page shows it where the result would go
        return page(request, "fragments/error.html", status_code=status, message=message)
    return page(request, "error.html", status_code=status, message=message, status=status)


async def orchestrator_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OrchestratorError)
    return _error(request, http_status(exc), str(exc))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error(request, 404, f"there is no page at {request.url.path}")
    if exc.status_code == 405:
        return _error(request, 405, f"{request.method} is not how {request.url.path} is used")
    return _error(request, exc.status_code, exc.detail or "error")


async def internal_error(request: Request, exc: Exception) -> Response:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    log.error("internal error at %s on %s %s", stamp, request.method, request.url.path, exc_info=exc)
    return _error(request, 500, f"internal error at {stamp}: the server's log has the details")


HANDLERS = {OrchestratorError: orchestrator_error, HTTPException: http_error, Exception: internal_error}
