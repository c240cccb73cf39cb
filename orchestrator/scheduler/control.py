"""Acting on runs from outside the scheduler: cancel, wait, and run-with-daemon.

These work from the store alone (plus psutil for local processes), so ``orch cancel`` and
``orch run --wait`` behave the same whether the scheduler is up, starting or dead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.names import LOCAL_HOST
from orchestrator.plugins import PluginRegistry, discover
from orchestrator.project import Project
from orchestrator.scheduler import planner
from orchestrator.scheduler.daemon import ensure_daemon
from orchestrator.store import ProjectStore, RunRecord
from orchestrator.worker.processes import StepProcesses, step_token


def cancel_run(store: ProjectStore, run_ref: int | str) -> list[int]:
    """Mark a run CANCELLED, its unfinished steps CANCELLED, and end its local steps' processes.

    Returns the pids that were ended. The state is written first (one transaction), so the
    scheduler and the workers see the cancellation before the processes die and do not retry
    them. Steps on other hosts are stopped by the project's scheduler, which follows the store
    (their batch jobs cancelled, their pilot processes ended).
    """
    run = store.runs.get(run_ref)
    active = store.lifecycle.cancel_run(run.id)
    killed: list[int] = []
    for step in active:
        if step.host == LOCAL_HOST and step.pid:
            processes = StepProcesses(step_token(store.url, step.id, step.attempt), step.pid, step.proc_start)
            killed += processes.kill(include_worker=True)
    return killed


def restart_run(store: ProjectStore, run_ref: int | str) -> RunRecord:
    """Queue an existing run again with its params; its unchanged finished steps will be kept."""
    return store.lifecycle.restart_run(store.runs.get(run_ref).id)


def submit(project: Project, protocol: str, params: Mapping[str, Any], *, name: str | None = None,
           store: ProjectStore | None = None, registry: PluginRegistry | None = None,
           start_daemon: bool = True) -> RunRecord:
    """Create and queue a run, and make sure the project's scheduler is running."""
    own_store = store is None
    store = store or project.open_store()
    try:
        run = planner.create_run(store, project, registry or discover(), protocol, params, name=name)
    finally:
        if own_store:
            store.close()
    if start_daemon:
        ensure_daemon(project)
    return run


def wait_for_run(store: ProjectStore, run_id: int, timeout_s: float | None = None,
                 on_progress: Callable[[RunRecord, dict[str, int]], None] | None = None,
                 poll_s: float = 0.25) -> RunRecord:
    """Block until the run reaches a final state (or the timeout); return its last record."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        run = store.runs.get(run_id)
        if on_progress is not None:
            on_progress(run, store.steps.counts(run_id))
        if run.run_state.is_final:
            return run
        if deadline is not None and time.monotonic() > deadline:
            return run
        time.sleep(poll_s)
