"""Pure decisions of staging: where a file goes, whether it must move, how work is split.

Nothing here touches the network or the store, so all of it is unit-tested directly.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

from orchestrator.errors import UsageError
from orchestrator.transfer.fingerprint import FileStat

PART_SUFFIX = ".orch-part"  # temporary name of a file being written (kept for resuming)
LARGE_FILE = 32 * 1024 * 1024  # from this size a file moves alone, on its own resumable stream
MAX_BATCH_BYTES = 512 * 1024 * 1024
MAX_BATCH_FILES = 4096


class Action(enum.Enum):
    SKIP = "skip"  # the host (or the project, for outputs) already has this content
    CHECK_HASH = "check_hash"  # size equal, mtime changed: hash the content to decide
    SEND = "send"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What the ledger knows about one remote path of one host."""

    host: str
    remote_path: str
    local_path: str
    size: int
    mtime_ns: int
    sha256: str
    remote_mtime_ns: int | None = None
    direction: str = "in"


def decide_upload(local: FileStat, entry: LedgerEntry | None) -> Action:
    """Must ``local`` be sent to the remote path that ``entry`` describes?"""
    if entry is None or entry.size != local.size:
        return Action.SEND
    if entry.local_path == local.path and entry.mtime_ns == local.mtime_ns:
        return Action.SKIP
    return Action.CHECK_HASH  # touched, or another local file at that remote path: compare content


def decide_download(remote_size: int, remote_mtime_ns: int, local: FileStat | None,
                    entry: LedgerEntry | None) -> Action:
    """Must a remote output be fetched? Not when the ledger says the local copy is of this very
    remote version and the local copy has not changed since."""
    if entry is None or local is None:
        return Action.SEND
    if entry.size != remote_size or entry.remote_mtime_ns != remote_mtime_ns:
        return Action.SEND
    if entry.local_path != local.path or entry.size != local.size or entry.mtime_ns != local.mtime_ns:
        return Action.SEND
    return Action.SKIP


def remote_still_there(entry: LedgerEntry, remote: tuple[int, int] | None) -> bool:
    """Does the remote (size, mtime_ns) still match what the ledger recorded?"""
    if remote is None or remote[0] != entry.size:
        return False
    return entry.remote_mtime_ns is None or entry.remote_mtime_ns == remote[1]


def resume_offset(partial_size: int, total: int, prefix_matches: bool) -> int:
    """Where to go on from a partial copy of ``partial_size`` bytes of a ``total``-byte file."""
    if 0 < partial_size <= total and prefix_matches:
        return partial_size
    return 0


def expand_local(paths: Iterable[Path | str]) -> list[Path]:
    """Files named, and every file below the directories named (temporary parts left out)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for folder, dirs, names in os.walk(path):
                dirs.sort()
                files.extend(Path(folder) / n for n in sorted(names) if PART_SUFFIX not in n)
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or directory to stage")
    return list(dict.fromkeys(files))


def remote_path_for(local: Path, base: Path | None, remote_dir: PurePosixPath) -> PurePosixPath:
    """``remote_dir`` + the path of ``local`` relative to ``base`` (the project folder), so that
    a file has one place on the host whatever the step that reads it; a file outside ``base``
    goes under ``remote_dir/_abs`` with its full path."""
    return PurePosixPath(remote_paths_for([local], base, remote_dir)[0])


def remote_paths_for(files: Sequence[Path], base: Path | None, remote_dir: PurePosixPath) -> list[str]:
    """:func:`remote_path_for` of many files, on strings (a re-sync of thousands stays cheap)."""
    root = str(remote_dir).rstrip("/")
    inside = os.path.abspath(base).rstrip("/") + "/" if base is not None else None
    paths = []
    for local in files:
        absolute = os.path.abspath(local)
        if inside is not None and absolute.startswith(inside):
            paths.append(f"{root}/{absolute[len(inside):]}")
        else:
            paths.append(f"{root}/_abs{absolute}")
    return paths


def local_path_for(remote: str, remote_base: str, local_dir: Path) -> Path:
    try:
        relative = PurePosixPath(remote).relative_to(PurePosixPath(remote_base))
    except ValueError:
        raise UsageError(f"{remote}: not below remote_base {remote_base}") from None
    if ".." in relative.parts:
        raise UsageError(f"{remote}: refuses to write outside {local_dir}")
    return local_dir.joinpath(*relative.parts)


T = TypeVar("T")


def split_work(items: Sequence[tuple[T, int]], parallel: int, large: int = LARGE_FILE,
               max_batch_bytes: int = MAX_BATCH_BYTES,
               max_batch_files: int = MAX_BATCH_FILES) -> tuple[list[T], list[list[T]]]:
    """Split (item, size) pairs into large items (one stream each, biggest first) and batches
    of small ones: at least ``parallel`` batches when there are enough files, balanced by bytes,
    none above ``max_batch_bytes`` or ``max_batch_files``."""
    big = sorted((pair for pair in items if pair[1] >= large), key=lambda pair: -pair[1])
    small = [pair for pair in items if pair[1] < large]
    if not small:
        return [item for item, _ in big], []
    total = sum(size for _, size in small)
    count = max(min(parallel, len(small)), -(-total // max_batch_bytes), -(-len(small) // max_batch_files))
    batches: list[list[T]] = [[] for _ in range(count)]
    loads = [0] * count
    # Round-robin by position keeps neighbours (often read together) spread evenly and is
    # balanced enough for files of similar size; sizes still cap each batch.
    for index, (item, size) in enumerate(small):
        slot = index % count
        if loads[slot] + size > max_batch_bytes or len(batches[slot]) >= max_batch_files:
            slot = loads.index(min(loads))
        batches[slot].append(item)
        loads[slot] += size
    return [item for item, _ in big], [b for b in batches if b]
