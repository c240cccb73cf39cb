"""Which projects this server serves, by the name in their URL (``/p/NAME``).

``orch web P1 P2`` serves those folders; ``orch web --all`` every project of the user's list,
as it is when a page asks (a project created from the projects page appears at once). A name
that is not served is a 404, whatever exists on disk.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request

from orchestrator.app.projects import list_projects
from orchestrator.errors import NotFoundError
from orchestrator.project import Project
from orchestrator.web.settings import WebSettings


def served_projects(settings: WebSettings) -> dict[str, Path]:
    """name -> folder of every project served now."""
    if settings.projects is None:
        return {entry.name: entry.path for entry in list_projects() if entry.exists}
    served = {}
    for folder in settings.projects:
        project = Project.load(folder)
        served[project.name] = project.path
    return served


def project_path(request: Request, name: str | None = None) -> Path:
    """The folder of the project named in the URL; NotFoundError (404) if this server does not serve it."""
    name = name if name is not None else request.path_params["project"]
    settings: WebSettings = request.app.state.settings
    folders = served_projects(settings)
    if name not in folders:
        raise NotFoundError(f"no project {name!r} is served here")
    return folders[name]


def can_create(settings: WebSettings) -> bool:
    """Projects can be created (and appear) only on a server of the whole list (``--all``)."""
    return settings.projects is None
