"""Projects: create one (a folder and its store), list the known ones, show one, delete one.

The rules (names, what may be deleted) are :class:`~orchestrator.project.Project`'s; this module
turns them into records for the front ends.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestrator.app.access import ProjectRef, ProjectTarget, load_project, project_store
from orchestrator.app.serialize import Record
from orchestrator.project import PROJECT_FILE, Project, Registry


@dataclass(frozen=True)
class ProjectEntry(Record):
    """A project the user's list knows; ``exists`` is False when its folder is gone."""

    name: str
    path: Path
    exists: bool


@dataclass(frozen=True)
class ProjectInfo(Record):
    """A project's store and what it holds."""

    name: str
    path: Path
    store: str
    runs: int
    sets: int
    items: int


@dataclass(frozen=True)
class CreatedProject(Record):
    """A new project; ``foreign`` are the entries its folder already held (the user's, left alone)."""

    name: str
    path: Path
    foreign: list[Path]


@dataclass(frozen=True)
class LeftBehind(Record):
    """Something a deletion did not remove, and why (the user's files, a store elsewhere, ...)."""

    path: str
    why: str


@dataclass(frozen=True)
class ProjectDeletion(Record):
    """What deleting a project removed, and what it left."""

    name: str
    path: Path
    removed: list[Path]
    left: list[LeftBehind]


def create_project(path: str | os.PathLike[str], name: str | None = None,
                   store_url: str | None = None) -> CreatedProject:
    """Make the project folder and its store (SQLite in the folder unless ``store_url`` names a
    database) and add it to the user's list. The folder may already hold the user's files (they
    stay theirs: ``foreign``); an existing project there is a UsageError."""
    project = Project.create(Path(path), name, store_url)
    return CreatedProject(project.name, project.path, project.foreign_entries())


def list_projects() -> list[ProjectEntry]:
    """The user's projects by name (``exists`` tells whether the folder is still there)."""
    return [ProjectEntry(name, path, (path / PROJECT_FILE).exists()) for name, path in Registry().entries().items()]


def project_info(target: ProjectTarget) -> ProjectInfo:
    """Where the project's store is, and how many runs, sets and set items it holds."""
    with project_store(target) as (project, store):
        runs = store.runs.list()
        sets = store.list_sets()
        return ProjectInfo(project.name, project.path, store.where, len(runs), len(sets),
                           sum(item_set["size"] for item_set in sets))


@dataclass(frozen=True)
class ProjectOverview(Record):
    """A project at a glance (the web's projects page): whose, how active, its runs by state."""

    name: str
    path: Path
    owner: str
    created_at: str
    last_activity: datetime | None
    runs_by_state: dict[str, int]


def project_overview(target: ProjectTarget) -> ProjectOverview:
    """Owner (of the folder), creation time, the time of the newest event, and runs per state."""
    with project_store(target) as (project, store):
        by_state: dict[str, int] = {}
        for run in store.runs.list():
            by_state[run.state] = by_state.get(run.state, 0) + 1
        newest = store.events.list(after_id=max(store.events.last_id() - 1, 0), limit=1)
        last = newest[0].time if newest else None
    return ProjectOverview(project.name, project.path, _owner(project.path), project.created_at, last, by_state)


def project_size(target: ProjectTarget) -> int:
    """Bytes of the files in the project's folder (what it made and what users put there);
    symbolic links are not followed. Reads every folder: call it apart from quick pages."""
    project = load_project(target)
    total = 0
    for root, _dirs, files in os.walk(project.path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # removed while we walked
    return total


def _owner(path: Path) -> str:
    try:
        uid = path.stat().st_uid
    except OSError:
        return "?"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def find_project(ref: ProjectRef) -> ProjectEntry:
    """The project a folder or name refers to (NotFoundError when there is none)."""
    project = load_project(ref)
    return ProjectEntry(project.name, project.path, True)


def delete_project(ref: ProjectRef) -> ProjectDeletion:
    """Delete what the project made (its store in the folder, ``runs/``, ``project.json``, ...) and
    its entry in the user's list, and nothing else; refused while its scheduler runs."""
    project = load_project(ref)
    deletion = project.delete()
    return ProjectDeletion(project.name, project.path, list(deletion.removed),
                           [LeftBehind(what, why) for what, why in deletion.left])
