"""Content fingerprints (SHA-256, size) of the files a run wrote and of the raw files it read.

A run writes into its own folder: every file there is one of its outputs, except what the
orchestrator keeps there for itself (job folders, exported input sets, step logs). The raw
files a run read without copying them (an import's movies) are named in its sets' path
columns (``path``, ``*_path``); those outside the project's run folders are fingerprinted
as raw data, those in another run's folder are that run's outputs and are referred to by run.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, Table, select

from orchestrator.store.schema import ItemSetRow, SetString

#: What the orchestrator keeps in a run folder for itself: not outputs of the run.
INTERNAL_ENTRIES = ("jobs", "inputs", "logs")
_READ_SIZE = 1 << 20
_SETS = cast(Table, ItemSetRow.__table__)
_STRINGS = cast(Table, SetString.__table__)


@dataclass(frozen=True)
class FileFingerprint:
    """A file's path (relative to the project when inside it), size and SHA-256."""

    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UnreadableFile:
    """A file that could not be fingerprinted, with why (it is named, never skipped silently)."""

    path: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def display_path(path: Path, project_dir: Path) -> str:
    """``path`` relative to the project folder when it lies inside it (records stay portable)."""
    try:
        return path.relative_to(project_dir).as_posix()
    except ValueError:
        return str(path)


#: SHA-256 of files already read by this process, by (path, device, inode, size, mtime in ns):
#: the raw movies an import read are named again by the sets of every run downstream of it
_KNOWN: OrderedDict[tuple[str, int, int, int, int], str] = OrderedDict()
_KNOWN_MAX = 200_000
_KNOWN_LOCK = threading.Lock()


def _identity(path: Path, stat: os.stat_result) -> tuple[str, int, int, int, int]:
    return (str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def fingerprint_file(path: Path, project_dir: Path) -> FileFingerprint | UnreadableFile:
    """The SHA-256 and size of one file, read in 1 MiB blocks (never loaded whole).

    A file this process read before, unchanged since (same inode, size and modification time,
    as make and rsync judge it), is not read again."""
    shown = display_path(path, project_dir)
    try:
        before = os.stat(path)
        key = _identity(path, before)
        with _KNOWN_LOCK:
            known = _KNOWN.get(key)
            if known is not None:
                _KNOWN.move_to_end(key)
                return FileFingerprint(shown, before.st_size, known)
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            size = 0
            while block := handle.read(_READ_SIZE):
                digest.update(block)
                size += len(block)
        after = os.stat(path)
    except OSError as exc:
        return UnreadableFile(shown, exc.strerror or str(exc))
    if _identity(path, after) == key and size == before.st_size:  # not written while it was read
        with _KNOWN_LOCK:
            _KNOWN[key] = digest.hexdigest()
            if len(_KNOWN) > _KNOWN_MAX:
                _KNOWN.popitem(last=False)
    return FileFingerprint(shown, size, digest.hexdigest())


def run_output_files(run_dir: Path) -> Iterator[Path]:
    """Every file a run wrote in its folder, in a stable order, without what the orchestrator
    keeps there (:data:`INTERNAL_ENTRIES`); symbolic links to folders are not followed."""
    if not run_dir.is_dir():
        return
    for root, dirs, files in os.walk(run_dir):
        if Path(root) == run_dir:
            dirs[:] = [d for d in dirs if d not in INTERNAL_ENTRIES]
        dirs.sort()
        for name in sorted(files):
            yield Path(root) / name


def is_path_column(column: str) -> bool:
    """Set columns that name files: ``path`` and ``*_path`` (``image_path``, ...)."""
    return column == "path" or column.endswith("_path")


def referenced_files(engine: Engine, run_id: int, project_dir: Path) -> list[Path]:
    """The distinct files named in the path columns of the sets a run registered (read from the
    sets' string dictionaries, so a million particles in a thousand stacks cost a thousand rows)."""
    query = (select(_STRINGS.c.column, _STRINGS.c.value).join(_SETS, _SETS.c.id == _STRINGS.c.set_id)
             .where(_SETS.c.run_id == run_id))
    with engine.connect() as conn:
        values = {value for column, value in conn.execute(query) if is_path_column(column) and value}
    paths = set()
    for value in values:
        path = Path(value)
        paths.add(path if path.is_absolute() else project_dir / path)
    return sorted(paths)


def fingerprints(paths: Iterable[Path], project_dir: Path) -> list[dict[str, Any]]:
    """Fingerprints (or why not) of ``paths``, as plain dicts for the record."""
    return [fingerprint_file(path, project_dir).to_dict() for path in paths]
