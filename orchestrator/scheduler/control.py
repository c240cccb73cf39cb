"""Acting on runs from outside the scheduler: cancel, wait, and run-with-daemon.

These work from the store alone (plus psutil for local processes), so ``orch cancel`` and
``orch run --wait`` behave the same whether the scheduler is up, starting or dead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.errors import UsageError
from orchestrator.plugins import PluginRegistry, discover
from orchestrator.project import Project
from orchestrator.scheduler import planner
from orchestrator.scheduler.daemon import ensure_daemon
from orchestrator.store import ProjectStore, RunRecord, RunState, StepState, StepTransition
from orchestrator.worker.processes import is_alive, kill_tree


def cancel_run(store: ProjectStore, run_ref: int | str, local_host: str = "local") -> list[int]:
    """Mark a run CANCELLED, its unfinished steps CANCELLED, and kill its running processes.

    Returns the pids that were killed. The state is written first, so the scheduler and
    the workers see the cancellation before the processes die and do not retry them.
    """
    run = store.runs.get(run_ref)
    if run.run_state.is_final:
        raise UsageError(f"run {run.name} is already {run.state}")
    store.runs.set_state(run.id, RunState.CANCELLED, message="cancelled by user")
    running = store.steps.list(run.id, [StepState.RUNNING])
    store.steps.transitions([
        StepTransition(step.id, StepState.CANCELLED, "cancelled by user",
                       expected=(StepState.PENDING, StepState.QUEUED, StepState.RUNNING))
        for step in store.steps.list(run.id, [StepState.PENDING, StepState.QUEUED, StepState.RUNNING])])
    killed: list[int] = []
    for step in running:
        if step.host == local_host and step.pid is not None and is_alive(step.pid):
            killed += kill_tree(step.pid)
    return killed


RESTART_FROM = (RunState.CREATED, RunState.FINISHED, RunState.FAILED, RunState.CANCELLED)


def restart_run(store: ProjectStore, run_ref: int | str) -> RunRecord:
    """Queue an existing run again with its params; its unchanged finished steps will be kept."""
    run = store.runs.get(run_ref)
    if run.run_state not in RESTART_FROM:
        raise UsageError(f"run {run.name} is {run.state}: it is already queued or running")
    store.runs.set_state(run.id, RunState.QUEUED, message=f"restarted (was {run.state})")
    return store.runs.get(run.id)


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
