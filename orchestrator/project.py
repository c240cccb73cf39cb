"""Projects on disk: a folder holding ``project.json``, the SQLite store (by default) and run folders.

A project can also keep its store in PostgreSQL (``store_url`` in ``project.json``), which
is what shared projects do; the folder then holds the run files only. The user's list of
projects (for ``orch project list``) is a small JSON file in ``$ORCH_HOME`` (default
``~/.local/share/orchestrator``); the project folder itself remains the source of truth.

A project folder is often one the user already fills (``~/data/session1`` with its movies).
So a project records at creation what it owns there (``"made"`` in ``project.json``: the
entries it makes then or later, and whether it made the folder itself), ``delete`` removes
those and nothing else, and a folder that already holds one of those names is refused at
creation: an entry the project owns was never the user's. A store URL never holds a
password (``orchestrator.store.credentials``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from orchestrator.errors import NotFoundError, OrchestratorError, UsageError
from orchestrator.names import check_project_name
from orchestrator.store import ProjectStore
from orchestrator.store.credentials import redact, refuse_password
from orchestrator.store.engine import sqlite_path
from orchestrator.store.project_store import normalise_url

PROJECT_FILE = "project.json"
STORE_FILE = "store.sqlite"
RUNS_DIR = "runs"
#: What the orchestrator makes at the top of a project folder after creation, and where:
#: ``scheduler/lock.py`` (LOCK_FILE), ``scheduler/daemon.py`` (LOG_FILE), ``scheduler/executors/queue.py`` (the
#: pilots' logs) and ``security.py`` (``.orch/tls``, the project's TLS credentials). A module that makes a new entry
#: there adds its name here, so that projects created from then on own it and ``delete`` removes it
#: (tests/unit/test_project_delete.py checks these names against those modules).
MADE_LATER = ("scheduler.lock", "scheduler.log", "pilots", ".orch")
#: A SQLite database and the files SQLite makes beside it.
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def orch_home() -> Path:
    return Path(os.environ.get("ORCH_HOME") or Path.home() / ".local" / "share" / "orchestrator")


@dataclass(frozen=True)
class Deletion:
    """What ``Project.delete`` did: the paths it removed, and what it left with why."""

    removed: list[Path]
    left: list[tuple[str, str]]


@dataclass(frozen=True)
class Project:
    """A project folder and where its store lives.

    ``owned`` are the paths (relative to the folder) the project made or will make there;
    ``made_folder`` says whether creating the project made the folder itself."""

    name: str
    path: Path
    store_url: str
    created_at: str
    owned: tuple[str, ...] = field(default=())
    made_folder: bool = False

    @property
    def runs_dir(self) -> Path:
        return self.path / RUNS_DIR

    def run_dir(self, run_name: str) -> Path:
        """The run's folder. Run names are checked when a run is created (``orchestrator.names``);
        this refuses, as a second line, any name whose folder would not be directly in ``runs/``
        (older stores may hold names the rules now refuse, like ``my run``: those still work)."""
        separators = [sep for sep in (os.sep, os.altsep) if sep]
        folder = self.runs_dir / run_name
        if run_name in ("", ".", "..") or "\0" in run_name or any(sep in run_name for sep in separators) \
                or folder.parent != self.runs_dir:
            raise UsageError(f"run name {run_name[:60]!r}: its folder would not be inside {self.runs_dir}; refused")
        return folder

    def open_store(self) -> ProjectStore:
        return ProjectStore.open(self.store_url, self.name)

    def owned_entries(self) -> tuple[str, ...]:
        return self.owned or owned_entries(self.path, self.store_url)

    @classmethod
    def create(cls, path: Path | str, name: str | None = None, store_url: str | None = None) -> Project:
        """Make the folder, the store and the registry entry; refuse to overwrite a project.

        The folder may already hold the user's files (they stay the user's: see ``delete``,
        and ``foreign_entries``), but none of the entries the project would own. A failure
        leaves nothing behind."""
        folder = Path(path).expanduser().resolve()
        if name is None:
            name = check_project_name(folder.name, "project name (the folder's name; choose one with --name)")
        else:
            check_project_name(name, "project name (--name, name=)")
        if store_url is not None:
            refuse_password(store_url, "store URL (--store, store_url=)")
        url = store_url or str(folder / STORE_FILE)
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{folder}: not a folder")
        if (folder / PROJECT_FILE).exists():
            raise UsageError(f"{folder}: a project already exists there")
        owned = owned_entries(folder, url)
        taken = [entry for entry in owned if _present(folder / entry)]
        if taken:
            raise UsageError(f"{folder}: already holds {', '.join(taken)}, which a project makes as its own; "
                             "move it away or choose another folder")
        made_folder = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        project = cls(name, folder, url, datetime.now(UTC).isoformat(timespec="seconds"), owned, made_folder)
        try:
            ProjectStore.create(url, name).close()
            project.runs_dir.mkdir()
            (folder / PROJECT_FILE).write_text(json.dumps(project._document(), indent=2) + "\n")
        except BaseException:
            _remove_entries(folder, owned)
            if made_folder:
                _remove_if_empty(folder)
            raise
        Registry().add(project)
        return project

    def _document(self) -> dict[str, Any]:
        return {"name": self.name, "store_url": self.store_url, "created_at": self.created_at,
                "made": {"folder": self.made_folder, "entries": list(self.owned)}}

    @classmethod
    def load(cls, ref: Path | str) -> Project:
        """A project by folder path or by registered name."""
        folder = Path(ref).expanduser()
        if not (folder / PROJECT_FILE).exists():
            registered = Registry().find(str(ref))
            if registered is None:
                raise NotFoundError(f"{ref}: no project there or by that name (see `orch project list`)")
            folder = registered
        folder = folder.resolve()
        project_file = folder / PROJECT_FILE
        try:
            data = json.loads(project_file.read_text())
            name, url = str(data["name"]), str(data["store_url"])
            owned, made_folder = _made(data.get("made"), folder, url)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{project_file}: not a valid project file ({exc})") from None
        refuse_password(url, f"{project_file}: store_url")
        return cls(name, folder, url, str(data.get("created_at", "")), owned, made_folder)

    def foreign_entries(self) -> list[Path]:
        """What the folder holds that is not the project's: the user's files, which ``delete`` leaves."""
        mine = {PurePosixPath(entry).parts[0] for entry in self.owned_entries()}
        try:
            return sorted(entry for entry in self.path.iterdir() if entry.name not in mine)
        except FileNotFoundError:
            return []

    def delete(self) -> Deletion:
        """Remove what the project made (its SQLite store and the files beside it, ``runs/``,
        ``project.json``, the scheduler's lock and log, ``pilots/``) and its registry entry, and
        nothing else; say what was left and why. Refused while the project's scheduler runs."""
        self._refuse_while_scheduled()
        removal = _remove_entries(self.path, self.owned_entries())
        if removal.failed:
            listing = "; ".join(f"{path}: {why}" for path, why in removal.failed)
            raise OrchestratorError(f"project {self.name}: could not remove {listing}; "
                                    f"fix that and delete again ({PROJECT_FILE} was kept)")
        Registry().remove(self.name)
        left = [(str(entry), "not made by the project") for entry in self.foreign_entries()]
        left += [(str(target), f"the target of the link {link.name} (only the link was removed)")
                 for link, target in removal.links]
        if not _store_inside(self.path, self.store_url):
            left.append((redact(self.store_url), f"the store is outside the project folder; project "
                         f"{self.name}'s records stay in it"))
        removed = removal.removed
        if self.made_folder and _remove_if_empty(self.path):
            removed.append(self.path)
        elif self.path.exists() and not self.foreign_entries():
            left.append((str(self.path), "the folder existed before the project"))
        return Deletion(removed, left)

    def _refuse_while_scheduled(self) -> None:
        from orchestrator.scheduler.lock import running_pid  # the lock's owner, which imports this module

        pid = running_pid(self)
        if pid is not None:
            raise UsageError(f"project {self.name}: its scheduler is running (pid {pid}); "
                             f"stop it first: orch daemon {self.name} --stop")


def owned_entries(folder: Path, store_url: str) -> tuple[str, ...]:
    """The paths (relative to ``folder``) a project in ``folder`` with this store makes."""
    entries = [PROJECT_FILE, RUNS_DIR, *MADE_LATER]
    store = sqlite_path(normalise_url(store_url))
    if store is not None:
        try:
            relative = store.resolve().relative_to(folder.resolve())
        except ValueError:  # a SQLite store elsewhere is not the folder's to remove
            relative = None
        if relative is not None:
            entries += [f"{relative.as_posix()}{suffix}" for suffix in SQLITE_COMPANIONS]
    return tuple(entries)


def _made(made: Any, folder: Path, url: str) -> tuple[tuple[str, ...], bool]:
    """``owned`` and ``made_folder`` from ``project.json``'s ``"made"``; a project from before
    it existed owns what this version makes, and its folder goes when it ends up empty."""
    if made is None:
        return owned_entries(folder, url), True
    shape = '"made" must be {"folder": true or false, "entries": [relative paths]}'
    if not isinstance(made, dict) or not isinstance(made.get("folder"), bool) \
            or not isinstance(made.get("entries"), list):
        raise ValueError(shape)
    for entry in made["entries"]:
        path = PurePosixPath(entry) if isinstance(entry, str) else None
        # delete removes these: a hand-edited entry must not reach outside the folder
        if path is None or not path.parts or path.is_absolute() or ".." in path.parts or "\0" in entry:
            raise ValueError(f"{shape}; {entry!r} is not a path inside the project folder")
    return tuple(made["entries"]), made["folder"]


@dataclass
class _Removal:
    removed: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    links: list[tuple[Path, str]] = field(default_factory=list)  # (link, its target): only the link goes


def _remove_entries(folder: Path, entries: Iterable[str]) -> _Removal:
    """Remove those of ``entries`` that exist; ``project.json`` last, and not at all after a
    failure, so that a project that could not be removed in full can still be loaded."""
    removal = _Removal()
    for entry in sorted(entries, key=lambda e: e == PROJECT_FILE):
        path = folder / entry
        if not _present(path) or (entry == PROJECT_FILE and removal.failed):
            continue
        try:
            if path.is_symlink():  # e.g. runs/ moved to scratch space: the data there is not ours to remove
                target = os.readlink(path)
                path.unlink()
                removal.links.append((path, target))
            elif path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            removal.failed.append((path, exc.strerror or str(exc)))
            continue
        removal.removed.append(path)
    return removal


def _store_inside(folder: Path, store_url: str) -> bool:
    store = sqlite_path(normalise_url(store_url))
    return store is not None and folder.resolve() in store.resolve().parents


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _remove_if_empty(folder: Path) -> bool:
    try:
        folder.rmdir()
    except OSError:  # not empty (the user's files), or already gone
        return False
    return True


class Registry:
    """The user's list of known projects: name -> folder."""

    def __init__(self, home: Path | None = None) -> None:
        self.file = (home or orch_home()) / "projects.json"

    def _read(self) -> dict[str, str]:
        if not self.file.exists():
            return {}
        try:
            data = json.loads(self.file.read_text())
        except json.JSONDecodeError as exc:
            raise UsageError(f"{self.file}: damaged project list ({exc}); fix or delete it") from None
        return {str(k): str(v) for k, v in data.items()}

    def _write(self, data: dict[str, str]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.file)

    def add(self, project: Project) -> None:
        data = self._read()
        data[project.name] = str(project.path)
        self._write(data)

    def remove(self, name: str) -> None:
        data = self._read()
        if data.pop(name, None) is not None:
            self._write(data)

    def find(self, name: str) -> Path | None:
        path = self._read().get(name)
        return Path(path) if path else None

    def entries(self) -> dict[str, Path]:
        return {name: Path(path) for name, path in sorted(self._read().items())}
