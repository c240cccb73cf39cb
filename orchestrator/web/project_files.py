"""Which files of a project the server may read for a browser: only files inside its folder.

A path comes from a URL, so it is hostile until proven otherwise: it must be relative, name
no hidden entry (``.orch`` holds the project's TLS keys) and no ``..``, and what it names once
every symlink is followed must still be a regular file inside the project folder. A symlink
that leads out of the folder (``raw -> /data/session``) is refused like ``../``.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from starlette.exceptions import HTTPException

from orchestrator.errors import NotFoundError


def project_file(project_dir: Path, relative: str) -> Path:
    """The file ``relative`` names in the project folder, symlinks followed.

    403 (HTTPException) for a path that is absolute, climbs with ``..``, names a hidden entry
    or leads out of the folder; NotFoundError (404) for one that does not exist.
    """
    pure = PurePosixPath(relative)
    if not relative or "\0" in relative or "\\" in relative or pure.is_absolute():
        raise HTTPException(403, f"{relative!r}: not a path inside the project")
    if any(part == ".." or part.startswith(".") for part in pure.parts):
        raise HTTPException(403, f"{relative!r}: not a path inside the project")
    root = project_dir.resolve()
    try:
        resolved = (root / pure).resolve(strict=True)
    except FileNotFoundError:
        raise NotFoundError(f"{relative}: no such file in the project") from None
    except (OSError, RuntimeError):  # a symlink loop, a name too long
        raise HTTPException(403, f"{relative!r}: not a path inside the project") from None
    if not resolved.is_relative_to(root) or not resolved.is_file():
        raise HTTPException(403, f"{relative!r}: not a file inside the project")
    return resolved


def relative_to_project(project_dir: Path, path: str | os.PathLike[str]) -> str | None:
    """``path`` (absolute, or relative to the project as sets store them) as a project-relative
    path for a URL; None when it lies outside the project (then no picture of it is served)."""
    candidate = Path(path)
    if not candidate.is_absolute():
        pure = PurePosixPath(candidate)
        return None if ".." in pure.parts else pure.as_posix()
    try:
        return candidate.relative_to(project_dir).as_posix()
    except ValueError:
        try:
            return candidate.resolve().relative_to(project_dir.resolve()).as_posix()
        except (ValueError, OSError):
            return None
