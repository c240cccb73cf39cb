"""Finding and ending a step's processes: the worker that ran it and everything it started.

Nothing is ever killed by a bare pid from the store: after a reboot or a long pause the pid
may belong to anyone. A step's processes are identified by

- the worker process itself: its pid *and* its start time (``proc_start``), recorded together;
  a pid whose process started at another time is somebody else's;
- everything the step started: each such process carries the step's token in its environment
  (``ORCH_STEP_TOKEN``, set by the worker while the step runs and inherited by every child,
  grandchild, ``mpirun`` and its ranks). A child that outlived its worker (reparented to init
  after a ``kill -9``) is still found by its token, and an unrelated process never has it;
- while the worker lives, its process group: the worker leads its own group, so processes that
  left its tree (a daemonising launcher) but not its group are ended too.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import psutil

TOKEN_VARIABLE = "ORCH_STEP_TOKEN"
#: how far two readings of a process's start time may differ and still be the same process
_START_TOLERANCE_S = 0.05


def step_token(store_url: str, step_id: int, attempt: int) -> str:
    """The token of one attempt of one step of one project store (unique across projects)."""
    store = hashlib.sha256(store_url.encode()).hexdigest()[:12]
    return f"{store}/{step_id}/{attempt}"


def process_start(pid: int | None = None) -> float:
    """Start time of a process (this one by default), seconds since the epoch."""
    return float(psutil.Process(pid).create_time())


def become_group_leader() -> int:
    """Make this process the leader of its own process group (once); its pgid.

    A worker's steps then share the worker's group, so a cancel can end processes that left
    the worker's tree but not its group. A session leader cannot change group: it stays as is.
    """
    try:
        if os.getpgid(0) != os.getpid():
            os.setpgid(0, 0)
    except (PermissionError, OSError):
        pass  # a session leader (or a forbidden change): the token still finds the step's processes
    return os.getpgid(0)


@dataclass(frozen=True)
class StepProcesses:
    """What identifies one attempt's processes (from its step record)."""

    token: str
    pid: int | None = None
    proc_start: float | None = None

    def worker(self) -> psutil.Process | None:
        """The worker process, if it still runs and really is the one recorded."""
        if not self.pid or self.proc_start is None:
            return None
        try:
            proc = psutil.Process(self.pid)
            same = abs(proc.create_time() - self.proc_start) <= _START_TOLERANCE_S
            return proc if same and proc.status() != psutil.STATUS_ZOMBIE else None
        except psutil.Error:
            return None

    def find(self, include_worker: bool = True) -> list[psutil.Process]:
        """Every live process of this attempt (the worker first when ``include_worker``)."""
        found: dict[int, psutil.Process] = {}
        worker = self.worker()
        if worker is not None:
            if include_worker:
                found[worker.pid] = worker
            for child in _safe_children(worker):
                found[child.pid] = child
            for proc in _group_members(worker.pid):
                if proc.pid != worker.pid or include_worker:
                    found.setdefault(proc.pid, proc)
        for proc in processes_with_token(self.token):
            found.setdefault(proc.pid, proc)
        if not include_worker and worker is not None:
            found.pop(worker.pid, None)
        return list(found.values())

    def kill(self, include_worker: bool = True, timeout_s: float = 5.0) -> list[int]:
        """SIGTERM them all, SIGKILL what is left after ``timeout_s``; the pids signalled."""
        return terminate(self.find(include_worker), timeout_s)


def end_step_processes(token: str, pid: int | None, proc_start: float | None) -> list[int]:
    """End one attempt's processes, its worker included (run on the step's node, e.g. by its nanny)."""
    return StepProcesses(token, pid, proc_start).kill(include_worker=True)


def end_step_children(token: str, pid: int | None, proc_start: float | None) -> list[int]:
    """End what one attempt started, leaving its worker (run on the step's worker itself)."""
    return StepProcesses(token, pid, proc_start).kill(include_worker=False)


def _safe_children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return list(proc.children(recursive=True))
    except psutil.Error:
        return []


def _group_members(pgid: int) -> Iterator[psutil.Process]:
    """Processes of the group ``pgid`` (only called while its leader is verified alive, so the
    group cannot be a recycled one)."""
    if os.getpgid(0) == pgid:  # never our own group (the scheduler's or a test's)
        return
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                yield proc
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue


def processes_with_token(token: str) -> list[psutil.Process]:
    """Live processes whose environment carries ``token`` (those we may read: ours, or all as root)."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(TOKEN_VARIABLE) == token:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def terminate(procs: Iterable[psutil.Process], timeout_s: float = 5.0) -> list[int]:
    """SIGTERM, wait, SIGKILL what is left; a process that is gone already is not an error."""
    procs = list(procs)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            continue
    _gone, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=timeout_s)
    return [p.pid for p in procs]


def kill_tree(pid: int, timeout_s: float = 5.0) -> list[int]:
    """End a process we started ourselves (a worker we hold a handle on) and its descendants."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    return terminate([*_safe_children(root), root], timeout_s)


def is_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
