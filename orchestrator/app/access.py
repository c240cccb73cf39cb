"""How an operation reaches its project: a reference, opened and closed per call, or an open handle.

A command line opens the store once per command: every function takes a *project reference*
(a folder, a registered name, or a loaded :class:`Project`) and closes what it opened. A web
server answers many requests for the same project: it opens an :class:`OpenProject` once and
passes it to every call, which then reuse its store and leave it open.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # imported when a project is loaded: importing this module loads no store
    from orchestrator.project import Project
    from orchestrator.store import ProjectStore

#: a project folder, a registered project name, or a loaded project
ProjectRef: TypeAlias = "Project | str | os.PathLike[str]"


class OpenProject:
    """A project with its store open, for callers that make many calls (a web server).

    Use it as a context manager, or call :meth:`close`; the layer's functions never close it.
    The store's engine is safe to share between threads.
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self.store = project.open_store()

    @property
    def name(self) -> str:
        return self.project.name

    @property
    def path(self) -> Path:
        return self.project.path

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> OpenProject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ProjectTarget: TypeAlias = "ProjectRef | OpenProject"


def load_project(target: ProjectTarget) -> Project:
    """The project a reference names (NotFoundError names the reference when there is none)."""
    from orchestrator.project import Project

    if isinstance(target, OpenProject):
        return target.project
    if isinstance(target, Project):
        return target
    return Project.load(os.fspath(target))


def open_project(ref: ProjectRef) -> OpenProject:
    """Load a project and open its store, to pass to many calls; close it when done."""
    return OpenProject(load_project(ref))


@contextmanager
def project_store(target: ProjectTarget) -> Iterator[tuple[Project, ProjectStore]]:
    """The project and an open store for one operation: the handle's own, or one opened and
    closed here."""
    if isinstance(target, OpenProject):
        yield target.project, target.store
        return
    project = load_project(target)
    with project.open_store() as store:
        yield project, store
