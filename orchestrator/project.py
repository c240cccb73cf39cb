"""Projects on disk: a folder holding ``project.json``, the SQLite store (by default) and run folders.

A project can also keep its store in PostgreSQL (``store_url`` in ``project.json``), which
is what shared projects do; the folder then holds the run files only. The user's list of
projects (for ``orch project list``) is a small JSON file in ``$ORCH_HOME`` (default
``~/.local/share/orchestrator``); the project folder itself remains the source of truth.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.errors import NotFoundError, UsageError
from orchestrator.store import ProjectStore

PROJECT_FILE = "project.json"
STORE_FILE = "store.sqlite"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def orch_home() -> Path:
    return Path(os.environ.get("ORCH_HOME") or Path.home() / ".local" / "share" / "orchestrator")


@dataclass(frozen=True)
class Project:
    """A project folder and where its store lives."""

    name: str
    path: Path
    store_url: str
    created_at: str

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    def run_dir(self, run_name: str) -> Path:
        return self.runs_dir / run_name

    def open_store(self) -> ProjectStore:
        return ProjectStore.open(self.store_url, self.name)

    @classmethod
    def create(cls, path: Path | str, name: str | None = None, store_url: str | None = None) -> Project:
        """Make the folder, the store and the registry entry; refuse to overwrite a project."""
        folder = Path(path).expanduser().resolve()
        name = name or folder.name
        if not _NAME.match(name):
            raise UsageError(f"project name {name!r}: use letters, digits, '.', '_' or '-' (max 128)")
        if (folder / PROJECT_FILE).exists():
            raise UsageError(f"{folder}: a project already exists there")
        folder.mkdir(parents=True, exist_ok=True)
        url = store_url or str(folder / STORE_FILE)
        store = ProjectStore.create(url, name)
        store.close()
        project = cls(name, folder, url, datetime.now(UTC).isoformat(timespec="seconds"))
        (folder / "runs").mkdir(exist_ok=True)
        (folder / PROJECT_FILE).write_text(json.dumps(
            {"name": name, "store_url": url, "created_at": project.created_at}, indent=2) + "\n")
        Registry().add(project)
        return project

    @classmethod
    def load(cls, ref: Path | str) -> Project:
        """A project by folder path or by registered name."""
        folder = Path(ref).expanduser()
        if not (folder / PROJECT_FILE).exists():
            registered = Registry().find(str(ref))
            if registered is None:
                raise NotFoundError(f"{ref}: no project there or by that name (see `orch project list`)")
            folder = registered
        project_file = folder.resolve() / PROJECT_FILE
        try:
            data = json.loads(project_file.read_text())
            return cls(data["name"], folder.resolve(), data["store_url"], data.get("created_at", ""))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UsageError(f"{project_file}: not a valid project file ({exc})") from None

    def delete(self) -> None:
        """Remove the folder (and the SQLite store inside it) and the registry entry."""
        shutil.rmtree(self.path)
        Registry().remove(self.name)


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
