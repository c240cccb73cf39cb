"""One run, in the project page's side panel: tabs (summary and params, inputs and outputs,
steps, logs followed live, citations, provenance) and its actions (cancel, restart, delete)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from orchestrator.app import runs as app_runs
from orchestrator.app.logs import LogChunk, RunEnded, follow_logs
from orchestrator.app.outputs import run_inputs
from orchestrator.app.plugins import describe_protocol
from orchestrator.app.provenance import output_lineage, run_provenance
from orchestrator.app.status import run_status
from orchestrator.errors import NotFoundError, UsageError
from orchestrator.web.pages.served import project_path
from orchestrator.web.render import page

TABS = ("summary", "io", "steps", "logs", "citations", "provenance")
TAB_LABELS = {"summary": "Summary", "io": "Inputs & outputs", "steps": "Steps", "logs": "Logs",
              "citations": "Citations", "provenance": "Provenance"}


def _run_ref(request: Request) -> int | str:
    ref = request.path_params["run"]
    return int(ref) if ref.isdigit() else ref


async def run_panel(request: Request) -> Response:
    folder = project_path(request)
    status = await run_in_threadpool(run_status, folder, _run_ref(request))
    return page(request, "fragments/run_panel.html", project=status.project, run=status.run, tabs=TABS,
                tab_labels=TAB_LABELS, scheduler=status.scheduler)


async def run_tab(request: Request) -> Response:
    folder = project_path(request)
    tab = request.path_params["tab"]
    if tab not in TABS:
        raise NotFoundError(f"no tab {tab!r}; the tabs: {', '.join(TABS)}")
    ref = _run_ref(request)
    status = await run_in_threadpool(run_status, folder, ref)
    context: dict[str, Any] = {"project": status.project, "run": status.run}
    if tab == "io":
        context["inputs"] = await run_in_threadpool(run_inputs, folder, ref)
    elif tab == "citations":
        context["protocol"] = await run_in_threadpool(describe_protocol, status.run.protocol)
    elif tab == "provenance":
        try:
            record = await run_in_threadpool(run_provenance, folder, ref)
            context["record"] = json.dumps(record, indent=2, default=str)
            context["lineage"] = await run_in_threadpool(output_lineage, folder, ref)
        except NotFoundError as exc:
            context["record"], context["missing"] = None, str(exc)
    return page(request, f"fragments/tab_{tab}.html", **context)


async def follow_log(request: Request) -> Response:
    """The run's logs (or one step's) as server-sent events, until the run ends."""
    folder = project_path(request)
    step = request.query_params.get("step") or None
    return StreamingResponse(_log_events(request, folder, _run_ref(request), step), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _log_events(request: Request, folder: Path, ref: int | str, step: str | None) -> AsyncIterator[str]:
    chunks = follow_logs(folder, ref, step)
    try:
        async for item in iterate_in_threadpool(chunks):
            if await request.is_disconnected():
                break
            if isinstance(item, LogChunk):
                yield f"event: log\ndata: {json.dumps({'step': item.step, 'text': item.text})}\n\n"
            elif isinstance(item, RunEnded):
                yield f"event: ended\ndata: {json.dumps({'run': item.run, 'state': item.state})}\n\n"
    finally:
        close = getattr(chunks, "close", None)  # a generator: closing it closes the store it opened
        if close is not None:
            close()


async def action(request: Request) -> Response:
    folder = project_path(request)
    ref = _run_ref(request)
    verb = request.path_params["action"]
    if verb == "cancel":
        outcome = await run_in_threadpool(app_runs.cancel_run, folder, ref)
        message = f"cancelled run {outcome.run_name}: {len(outcome.steps_cancelled)} step(s) stopped"
    elif verb == "restart":
        info = await run_in_threadpool(app_runs.restart_run, folder, ref)
        message = f"run {info.name} queued again"
    elif verb == "delete":
        deleted = await run_in_threadpool(app_runs.delete_run, folder, ref)
        message = f"deleted run {deleted.run_name}" + (" and its folder" if deleted.folder_removed else "")
    else:
        raise UsageError(f"no action {verb!r}: cancel, restart or delete")
    response = page(request, "fragments/notice.html", message=message)
    # also as a toast: the panel reloads when the run's state changes, which replaces the notice
    response.headers["HX-Trigger"] = json.dumps({"orchToast": message})
    return response


ROUTES = [
    Route("/p/{project}/runs/{run}", run_panel),
    Route("/p/{project}/runs/{run}/tab/{tab}", run_tab),
    Route("/p/{project}/runs/{run}/log", follow_log),
    Route("/p/{project}/runs/{run}/{action}", action, methods=["POST"]),
]
