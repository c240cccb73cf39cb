"""Acting on runs: submit one (or a workflow file), restart, cancel, and wait with progress.

Runs are created by :func:`orchestrator.scheduler.planner.create_run` (params validated, pointers
resolved, provenance recorded) and workflows by :mod:`orchestrator.workflow`; cancel and restart
are the scheduler's :mod:`~orchestrator.scheduler.control` operations, which change states
through the store's lifecycle. Nothing here writes a state itself. Submitting starts the
project's scheduler detached unless asked not to (or wakes the one that runs).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from orchestrator import workflow
from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.app.records import Record, RunInfo, StepCounts
from orchestrator.app.scheduler import ensure_scheduler
from orchestrator.errors import UsageError
from orchestrator.plugins import PluginRegistry, discover
from orchestrator.scheduler import control, planner
from orchestrator.scheduler.lock import running_pid
from orchestrator.store import RunState, StepState

#: how long a wait lets the scheduler be gone before starting it again (it may be between an
#: idle exit and the next start, or it crashed)
SCHEDULER_GRACE_S = 5.0
UNFINISHED_STEPS = (StepState.PENDING, StepState.QUEUED, StepState.RUNNING)


@dataclass(frozen=True)
class RunProgress(Record):
    """Where one run stands while it is waited for."""

    run: RunInfo
    steps: StepCounts


@dataclass(frozen=True)
class CancelOutcome(Record):
    """What a cancellation stopped: the steps that had not ended, and the processes killed."""

    run_id: int
    run_name: str
    steps_cancelled: list[str]
    killed_pids: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"run": {"id": self.run_id, "name": self.run_name}, "state": "cancelled",
                "steps_cancelled": list(self.steps_cancelled), "killed_pids": list(self.killed_pids)}


ProgressCallback = Callable[[list[RunProgress]], None]


def submit_run(target: ProjectTarget, protocol: str, params: Mapping[str, Any] | None = None, *,
               name: str | None = None, host: str | None = None, start_scheduler: bool = True,
               registry: PluginRegistry | None = None) -> RunInfo:
    """Create and queue a run of ``protocol`` with ``params`` (strings are coerced to the params'
    types) on ``host`` (default: the local host). Errors name the param, pointer or host at fault;
    nothing is left behind when one is raised."""
    with project_store(target) as (project, store):
        options: dict[str, Any] = {"name": name}
        if host is not None:
            options["host"] = host
        run = planner.create_run(store, project, registry or discover(), protocol, dict(params or {}), **options)
    if start_scheduler:
        ensure_scheduler(project)
    return RunInfo.of(run)


def submit_workflow(target: ProjectTarget, source: str | PathLike[str] | Mapping[str, Any], *,
                    host: str | None = None, start_scheduler: bool = True, registry: PluginRegistry | None = None,
                    source_name: str = "workflow.json") -> list[RunInfo]:
    """Create the runs of a workflow (a JSON file, or its decoded document) all or none, then queue
    them in order. ``host`` overrides every run's own host. ``source_name`` names a document in
    messages."""
    if isinstance(source, Mapping):
        document = workflow.parse_workflow(dict(source), Path(source_name))
    else:
        document = workflow.load_workflow(Path(source))
    with project_store(target) as (project, store):
        runs = workflow.submit_workflow(document, registry or discover(), store, project, host=host)
    if start_scheduler:
        ensure_scheduler(project)
    return [RunInfo.of(run) for run in runs]


def restart_run(target: ProjectTarget, run_ref: int | str, *, start_scheduler: bool = True) -> RunInfo:
    """Queue a run that ended again with its params; its unchanged finished steps are kept.
    A run still queued or running is refused (a UsageError naming its state)."""
    with project_store(target) as (project, store):
        run = control.restart_run(store, run_ref)
    if start_scheduler:
        ensure_scheduler(project)
    return RunInfo.of(run)


def cancel_run(target: ProjectTarget, run_ref: int | str) -> CancelOutcome:
    """Cancel a run: its unfinished steps are cancelled and the processes of its running ones
    killed. A run that already ended is refused (a UsageError naming its state)."""
    with project_store(target) as (_project, store):
        run = store.runs.get(run_ref)
        unfinished = {step.id for step in store.steps.list(run.id, UNFINISHED_STEPS)}
        killed = control.cancel_run(store, run.id)
        cancelled = [step.name for step in store.steps.list(run.id, [StepState.CANCELLED]) if step.id in unfinished]
    return CancelOutcome(run.id, run.name, cancelled, list(killed))


@dataclass(frozen=True)
class RunDeletion(Record):
    """A deleted run, and whether its folder went with it."""

    run_id: int
    run_name: str
    folder_removed: bool


def delete_run(target: ProjectTarget, run_ref: int | str) -> RunDeletion:
    """Delete a run that has ended and that no other run reads: its records and its run folder
    (which only the orchestrator writes into). Refused, naming why, for a run still queued or
    running, or one whose outputs other runs use."""
    with project_store(target) as (project, store):
        run = store.runs.get(run_ref)
        if run.run_state in (RunState.QUEUED, RunState.RUNNING):
            raise UsageError(f"run {run.name} is {run.state}: cancel it before deleting it")
        consumers = [store.runs.get(run_id).name for run_id in store.runs.consumers(run.id)]
        if consumers:
            raise UsageError(f"run {run.name} cannot be deleted: run(s) {', '.join(consumers)} read its outputs; "
                             "delete them first")
        folder = project.run_dir(run.name)
        store.runs.delete(run.id)
    removed = False
    if folder.is_dir() and folder.parent == project.runs_dir and not folder.is_symlink():
        shutil.rmtree(folder)
        removed = True
    return RunDeletion(run.id, run.name, removed)


def wait_for_runs(target: ProjectTarget, run_refs: Sequence[int | str], timeout_s: float | None = None, *,
                  on_progress: ProgressCallback | None = None, restart_scheduler: bool = True,
                  on_scheduler_restart: Callable[[int], None] | None = None,
                  poll_s: float = 0.25) -> list[RunInfo]:
    """Follow runs until every one has ended or ``timeout_s`` passed; their last records.

    ``on_progress`` gets every run's record and step counts at each look (every ``poll_s``).
    With ``restart_scheduler`` a scheduler that is gone while runs wait (it crashed, or idled
    out just as they were queued) is started again, and ``on_scheduler_restart`` told its pid.
    A run still not ended at the timeout comes back in its current state: the caller decides.
    """
    if timeout_s is not None and timeout_s < 0:
        raise UsageError(f"timeout {timeout_s:g} s: must be 0 or more seconds")
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    gone_since: float | None = None
    with project_store(target) as (project, store):
        run_ids = [store.runs.get(ref).id for ref in run_refs]
        while True:
            runs = [RunInfo.of(store.runs.get(run_id)) for run_id in run_ids]
            if on_progress is not None:
                on_progress([RunProgress(run, StepCounts(store.steps.counts(run.id))) for run in runs])
            if all(run.run_state.is_final for run in runs):
                return runs
            if deadline is not None and time.monotonic() >= deadline:
                return runs
            if restart_scheduler:
                if running_pid(project) is not None:
                    gone_since = None
                elif gone_since is None:
                    gone_since = time.monotonic()
                elif time.monotonic() - gone_since > SCHEDULER_GRACE_S:
                    pid = ensure_scheduler(project)
                    gone_since = None
                    if on_scheduler_restart is not None:
                        on_scheduler_restart(pid)
            time.sleep(poll_s)


def outcome(runs: Sequence[RunInfo]) -> RunState | None:
    """What several runs came to: None while one has not ended, else FAILED when one failed, else
    CANCELLED when one was cancelled, else FINISHED."""
    states = {run.run_state for run in runs}
    if any(not state.is_final for state in states):
        return None
    for state in (RunState.FAILED, RunState.CANCELLED):
        if state in states:
            return state
    return RunState.FINISHED


def wait_for_run(target: ProjectTarget, run_ref: int | str, timeout_s: float | None = None, *,
                 on_progress: ProgressCallback | None = None, restart_scheduler: bool = True,
                 poll_s: float = 0.25) -> RunInfo:
    """:func:`wait_for_runs` for one run."""
    (run,) = wait_for_runs(target, [run_ref], timeout_s, on_progress=on_progress,
                           restart_scheduler=restart_scheduler, poll_s=poll_s)
    return run
