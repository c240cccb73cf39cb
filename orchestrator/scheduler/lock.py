"""Who schedules a project: the ``flock`` on ``<project>/scheduler.lock`` and the pid written in it.

Kept apart from :mod:`orchestrator.scheduler.daemon` so that asking "does the scheduler run?"
(``orch status``, the web view) costs a file lock, not an import of dask and the scheduler.
The kernel drops the lock when its process dies, even by kill -9, so a crashed scheduler
never blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
import signal
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # only its folder is used: this module stays free of the store's imports
    from orchestrator.project import Project

LOCK_FILE = "scheduler.lock"
#: the signal ``orch run`` sends a running scheduler so that it looks at new runs at once
WAKE_SIGNAL = signal.SIGUSR1


class SchedulerLock:
    """Exclusive, crash-safe ownership of a project's scheduling."""

    def __init__(self, project: Project) -> None:
        self.path = project.path / LOCK_FILE
        self.handle: IO[str] | None = None

    def acquire(self) -> bool:
        handle = open(self.path, "a+")  # noqa: SIM115 - held for the life of the scheduler
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return True

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def running_pid(project: Project) -> int | None:
    """The pid of the project's live scheduler, -1 when the lock is held but names no pid, or None."""
    path = project.path / LOCK_FILE
    if not path.exists():
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None
