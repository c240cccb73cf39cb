"""The folder an export writes into: new or empty when the export starts, and only files it creates.

Every file is opened with exclusive creation (``x``), so a file that appeared meanwhile is an
error, never overwritten. When an export fails half-way, :meth:`Destination.discard` removes
what this export wrote (and the folder, when it made it), so the same command can be run again;
nothing else is removed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchestrator.export.errors import ExportError

#: Called while a file is copied: (name in the export, bytes copied so far, bytes in all).
ProgressCallback = Callable[[str, int, int], None]

_BLOCK = 4 << 20


@dataclass(frozen=True)
class CopiedFile:
    """A file the export wrote: its path in the export, size and SHA-256 (computed while writing)."""

    name: str
    size: int
    sha256: str


class Destination:
    """An export's folder; use :meth:`prepare` to get one."""

    def __init__(self, root: Path, created: list[Path]) -> None:
        self.root = root
        self._created = created  # the folder and the parents of it that preparing it made, deepest first
        self._files: list[Path] = []
        self._dirs: list[Path] = []

    @classmethod
    def prepare(cls, path: str | os.PathLike[str]) -> Destination:
        """The folder ``path``, made when it does not exist; ExportError when it is a file or holds anything."""
        root = Path(path).expanduser()
        if root.exists() or root.is_symlink():
            if not root.is_dir():
                raise ExportError(f"{root} exists and is not a folder; give a new or empty folder")
            try:
                taken = sorted(entry.name for entry in root.iterdir())
            except OSError as exc:
                raise ExportError(f"{root}: cannot list the folder: {exc.strerror or exc}") from None
            if taken:
                shown = ", ".join(taken[:5]) + (f" and {len(taken) - 5} more" if len(taken) > 5 else "")
                raise ExportError(f"{root} is not empty (it holds {shown}); an export never writes over files: "
                                  "give a new or empty folder")
            return cls(root.resolve(), created=[])
        missing = [root]
        while not missing[-1].parent.exists() and missing[-1].parent != missing[-1]:
            missing.append(missing[-1].parent)
        try:
            root.mkdir(parents=True)
        except OSError as exc:
            raise ExportError(f"{root}: cannot create the folder: {exc.strerror or exc}") from None
        return cls(root.resolve(), created=[folder.resolve() for folder in missing])

    def new_path(self, name: str) -> Path:
        """Where the file ``name`` (a relative POSIX path) goes; its folders are made, and it must not exist.

        For writers that take a path (MRC, PNG): the caller writes it, this export owns it."""
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ExportError(f"{name!r}: not a path inside the export")
        target = self.root.joinpath(*relative.parts)
        self._make_dirs(target.parent)
        if target.exists() or target.is_symlink():
            raise ExportError(f"{target} appeared while exporting; it is left as it is")
        self._files.append(target)
        return target

    def write_text(self, name: str, text: str) -> CopiedFile:
        """Write a new text file (UTF-8)."""
        return self.write_bytes(name, text.encode("utf-8"))

    def write_bytes(self, name: str, data: bytes) -> CopiedFile:
        """Write a new file from memory."""
        target = self.new_path(name)
        try:
            with open(target, "xb") as handle:
                handle.write(data)
        except OSError as exc:
            raise ExportError(f"{target}: cannot write: {exc.strerror or exc}") from None
        return CopiedFile(name, len(data), hashlib.sha256(data).hexdigest())

    def copy(self, source: Path, name: str, progress: ProgressCallback | None = None) -> CopiedFile:
        """Copy ``source`` to ``name`` in blocks, hashing as it goes; ``progress`` hears of each block."""
        try:
            total = source.stat().st_size
            reader = open(source, "rb")
        except OSError as exc:
            raise ExportError(f"{source}: cannot read: {exc.strerror or exc}") from None
        target = self.new_path(name)
        digest, done = hashlib.sha256(), 0
        with reader:
            try:
                writer = open(target, "xb")
            except OSError as exc:
                raise ExportError(f"{target}: cannot write: {exc.strerror or exc}") from None
            with writer:
                if progress is not None:
                    progress(name, 0, total)
                while True:
                    try:
                        block = reader.read(_BLOCK)
                    except OSError as exc:
                        raise ExportError(f"{source}: read failed after {done} bytes: {exc.strerror or exc}") from None
                    if not block:
                        break
                    try:
                        writer.write(block)
                    except OSError as exc:
                        raise ExportError(f"{target}: write failed: {exc.strerror or exc}") from None
                    digest.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(name, done, total)
        return CopiedFile(name, done, digest.hexdigest())

    def discard(self) -> None:
        """Remove what this export wrote, newest first, and the folder (with its parents) when this
        export made it."""
        for path in reversed(self._files):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                continue  # left for the user to see; the error that ended the export is what is reported
        for folder in [*reversed(self._dirs), *self._created]:
            try:
                folder.rmdir()  # only when empty: a file someone else put there stays
            except OSError:
                continue

    def _make_dirs(self, folder: Path) -> None:
        missing = []
        while folder != self.root and not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for item in reversed(missing):
            try:
                item.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise ExportError(f"{item}: cannot create the folder: {exc.strerror or exc}") from None
            self._dirs.append(item)
