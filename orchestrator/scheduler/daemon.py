"""The per-project scheduler process: one at a time (a lock file), foreground or detached.

``orch daemon PROJECT`` runs it in the foreground; ``orch run`` starts it detached when it
is not running (``ensure_daemon``). It reconciles what a previous scheduler left behind,
starts the host's dask cluster and serves queued runs until it has been idle for
``idle_exit_s``. The lock is an ``flock`` on ``<project>/scheduler.lock``: the kernel drops
it when the process dies, even by kill -9, so a crashed scheduler never blocks the next.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import OrchestratorError
from orchestrator.scheduler.lock import LOCK_FILE, WAKE_SIGNAL, SchedulerLock, running_pid

if TYPE_CHECKING:  # the scheduler itself (dask, the engine, the store) is imported by serve() only
    from orchestrator.project import Project
    from orchestrator.store import ProjectStore

__all__ = ["DEFAULT_IDLE_EXIT_S", "LOCK_FILE", "LOG_FILE", "WAKE_SIGNAL", "SchedulerLock", "SchedulerStartError",
           "ensure_daemon", "running_pid", "serve"]

LOG_FILE = "scheduler.log"
DEFAULT_IDLE_EXIT_S = 60.0


class SchedulerStartError(OrchestratorError):
    """The detached scheduler did not come up."""


def ensure_daemon(project: Project, idle_exit_s: float = DEFAULT_IDLE_EXIT_S, workers: int | None = None,
                  retries: int | None = None) -> int:
    """Start the project's scheduler detached unless one runs (then wake it: new runs start at
    once instead of at its next poll); return its pid."""
    pid = running_pid(project)
    if pid is not None:
        if pid > 0:
            try:
                os.kill(pid, WAKE_SIGNAL)
            except OSError:  # it is exiting, or not ours to signal: it polls anyway
                pass
        return pid
    command = [sys.executable, "-m", "orchestrator.scheduler.daemon", str(project.path),
               "--idle-exit", str(idle_exit_s)]
    if workers is not None:
        command += ["--workers", str(workers)]
    if retries is not None:
        command += ["--retries", str(retries)]
    log = open(project.path / LOG_FILE, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True, close_fds=True)
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pid = running_pid(project)
        if pid is not None:
            return pid
        if proc.poll() is not None:
            raise SchedulerStartError(f"the scheduler exited at start (code {proc.returncode}); "
                                      f"see {project.path / LOG_FILE}")
        time.sleep(0.05)
    return proc.pid


def serve(project: Project, idle_exit_s: float | None, workers: int | None = None,
          retries: int | None = None) -> int:
    """Run the scheduler in this process; returns 0, or 3 if another one holds the project."""
    # `orch run` wakes the scheduler with SIGUSR1 as soon as the lock names it: ignore the
    # signal until the scheduler exists (its default action would end this process).
    signal.signal(WAKE_SIGNAL, signal.SIG_IGN)
    lock = SchedulerLock(project)
    if not lock.acquire():
        logging.getLogger(__name__).info("a scheduler already runs for %s", project.name)
        return 3
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        from orchestrator.scheduler.reconcile import reconcile_after_crash
        from orchestrator.store import RunState

        store = project.open_store()
    except BaseException:
        lock.release()
        raise
    try:
        try:
            reconcile_after_crash(store, project_dir=project.path)
            _serve_with_cluster(project, store, idle_exit_s, workers, retries, lambda: stopping)
        finally:
            lock.release()
        # A run queued while we were going idle found our lock held and started no scheduler:
        # hand it to a new one rather than leave it waiting.
        if idle_exit_s is not None and not stopping and store.runs.list([RunState.QUEUED]):
            ensure_daemon(project, idle_exit_s, workers, retries)
    finally:
        store.close()
    return 0


def _serve_with_cluster(project: Project, store: ProjectStore, idle_exit_s: float | None, workers: int | None,
                        retries: int | None, stop: Callable[[], bool]) -> None:
    """Serve until idle; the local cluster starts only if a step runs on the local host.

    The local host is the hosts files' ``[hosts.local]`` (else the built-in one), read when a
    local run first starts; ``workers`` (``--workers``) overrides its number of workers."""
    from orchestrator.scheduler.engine import Scheduler, SchedulerConfig
    from orchestrator.scheduler.executors import HostExecutors
    from orchestrator.scheduler.executors.local import ConfiguredLocalHost, LocalExecutor
    from orchestrator.security import project_tls

    config = SchedulerConfig()
    if retries is not None:
        config.default_retries = retries
    security = project_tls(project.path).cluster_security()  # every dask endpoint speaks TLS (made on first use)
    local = LocalExecutor(None, configured=ConfiguredLocalHost(project.path, workers, security))
    scheduler = Scheduler(project, None, store, config=config,
                          executors=HostExecutors(local, project.path, store))
    signal.signal(WAKE_SIGNAL, lambda _signum, _frame: scheduler.wake())
    try:
        scheduler.run_until_idle(idle_exit_s, stop=stop)
    finally:
        scheduler.close_hosts()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchestrator.scheduler.daemon")
    parser.add_argument("project", type=Path)
    parser.add_argument("--idle-exit", type=float, default=DEFAULT_IDLE_EXIT_S,
                        help="seconds without work before exiting (0: never)")
    parser.add_argument("--workers", type=int, default=None,
                        help="local worker processes (default: the hosts file's [hosts.local] workers, else one "
                             "per core)")
    parser.add_argument("--retries", type=int, default=None,
                        help="retries of a failed step when its protocol sets none (default 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from orchestrator.project import Project

    return serve(Project.load(args.project), args.idle_exit or None, args.workers, args.retries)


if __name__ == "__main__":
    sys.exit(main())
