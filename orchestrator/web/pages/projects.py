"""The projects page (Scipion's manager window): list, create, open and delete projects."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from orchestrator.app.projects import create_project, delete_project, project_overview, project_size
from orchestrator.cli.output import human_bytes
from orchestrator.errors import UsageError
from orchestrator.web.pages.served import can_create, project_path, served_projects
from orchestrator.web.render import page


def _overviews(request: Request) -> list:
    folders = served_projects(request.app.state.settings)
    return [project_overview(folder) for _name, folder in sorted(folders.items())]


async def projects_page(request: Request) -> Response:
    overviews = await run_in_threadpool(_overviews, request)
    return page(request, "projects.html", projects=overviews, can_create=can_create(request.app.state.settings))


async def project_size_fragment(request: Request) -> Response:
    folder = project_path(request)
    size = await run_in_threadpool(project_size, folder)
    return HTMLResponse(human_bytes(size))


async def create(request: Request) -> Response:
    if not can_create(request.app.state.settings):
        raise UsageError("this server serves chosen projects only; start it with `orch web --all` to create some")
    form = await request.form()
    folder = str(form.get("path") or "").strip()
    name = str(form.get("name") or "").strip() or None
    if not folder:
        raise UsageError("give the folder of the new project (e.g. /data/2026-12-07_ribosome)")
    created = await run_in_threadpool(create_project, folder, name)
    overviews = await run_in_threadpool(_overviews, request)
    return page(request, "fragments/project_list.html", projects=overviews, created=created,
                can_create=True)


async def delete(request: Request) -> Response:
    folder = project_path(request)
    form = await request.form()
    name = request.path_params["project"]
    if str(form.get("confirm") or "") != name:
        raise UsageError(f"type the project's name ({name}) to confirm: nothing was deleted")
    deletion = await run_in_threadpool(delete_project, folder)
    return page(request, "fragments/deleted.html", deletion=deletion)


ROUTES = [
    Route("/", projects_page),
    Route("/projects", create, methods=["POST"]),
    Route("/projects/{project}/size", project_size_fragment),
    Route("/projects/{project}/delete", delete, methods=["POST"]),
]
