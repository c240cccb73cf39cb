"""The project's scheduler as a front end sees it: is it running, start it, stop it, serve here.

Asking whether it runs reads the lock file alone (:mod:`orchestrator.scheduler.lock`); dask
and the engine are imported only by :func:`serve_scheduler`, which runs it in this process.
Importing this module loads neither the store nor the scheduler.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.app.access import ProjectTarget, load_project
from orchestrator.app.errors import SchedulerBusyError
from orchestrator.app.serialize import Record
from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.scheduler import daemon
from orchestrator.scheduler.lock import LOCK_FILE, running_pid

if TYPE_CHECKING:
    from orchestrator.project import Project

DEFAULT_IDLE_EXIT_S = daemon.DEFAULT_IDLE_EXIT_S


@dataclass(frozen=True)
class SchedulerState(Record):
    """Whether the project's scheduler runs, and its pid (-1: the lock is held but names no pid)."""

    running: bool
    pid: int | None


@dataclass(frozen=True)
class SchedulerStart(Record):
    """The outcome of asking for a scheduler: its pid, whether it ran already, where it logs."""

    pid: int
    already_running: bool
    log: Path


@dataclass(frozen=True)
class SchedulerStop(Record):
    """The outcome of stopping the scheduler: ``stopped`` is False when it outlived the timeout."""

    pid: int | None
    was_running: bool
    stopped: bool


def scheduler_state(target: ProjectTarget) -> SchedulerState:
    """Whether the project's scheduler runs (from its lock file: the store is not opened)."""
    pid = running_pid(load_project(target))
    return SchedulerState(running=pid is not None, pid=pid)


def ensure_scheduler(project: Project, idle_exit_s: float = DEFAULT_IDLE_EXIT_S) -> int:
    """Start the project's scheduler detached unless one runs (then wake it); its pid."""
    try:
        return daemon.ensure_daemon(project, idle_exit_s)
    except daemon.SchedulerStartError as exc:  # it died at start; its log says why
        raise OrchestratorError(f"cannot start the scheduler of project {project.name}: {exc}") from None


def start_scheduler(target: ProjectTarget, idle_exit_s: float | None = None) -> SchedulerStart:
    """Start the scheduler in the background (it exits after ``idle_exit_s`` without work)."""
    project = load_project(target)
    if idle_exit_s is not None and idle_exit_s < 0:
        raise UsageError(f"idle exit {idle_exit_s:g} s: must be 0 or more seconds")
    before = running_pid(project)
    log = project.path / daemon.LOG_FILE
    if before is not None:
        return SchedulerStart(before, True, log)
    pid = ensure_scheduler(project, DEFAULT_IDLE_EXIT_S if idle_exit_s is None else idle_exit_s)
    return SchedulerStart(pid, False, log)


def stop_scheduler(target: ProjectTarget, timeout_s: float = 60.0, poll_s: float = 0.1) -> SchedulerStop:
    """Ask the scheduler to stop (SIGTERM) and wait up to ``timeout_s`` for it to exit."""
    project = load_project(target)
    pid = running_pid(project)
    if pid is None:
        return SchedulerStop(None, False, True)
    if pid <= 0:
        raise OrchestratorError(f"{project.path / LOCK_FILE} is held but names no pid; "
                                "find the scheduler process (`orchestrator.scheduler.daemon`) and stop it")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it exited between the check and the signal
    except PermissionError:
        raise OrchestratorError(f"scheduler pid {pid} belongs to another user; cannot stop it") from None
    deadline = time.monotonic() + timeout_s
    while running_pid(project) is not None:
        if time.monotonic() > deadline:
            return SchedulerStop(pid, True, False)
        time.sleep(poll_s)
    return SchedulerStop(pid, True, True)


def serve_scheduler(target: ProjectTarget, idle_exit_s: float | None = None, workers: int | None = None,
                    retries: int | None = None) -> None:
    """Run the scheduler in this process until it has been idle ``idle_exit_s`` seconds (None:
    until SIGTERM or KeyboardInterrupt). SchedulerBusyError when another one serves the project."""
    if idle_exit_s is not None and idle_exit_s < 0:
        raise UsageError(f"idle exit {idle_exit_s:g} s: must be 0 or more seconds")
    if workers is not None and workers < 1:
        raise UsageError(f"workers {workers}: must be 1 or more")
    if retries is not None and retries < 0:
        raise UsageError(f"retries {retries}: must be 0 or more")
    project = load_project(target)
    if daemon.serve(project, idle_exit_s or None, workers, retries) != 0:
        pid = running_pid(project)
        raise SchedulerBusyError(f"a scheduler already runs for project {project.name}"
                                 + (f" (pid {pid})" if pid else ""), pid)
