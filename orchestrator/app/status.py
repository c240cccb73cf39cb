"""Where a project stands, from the store alone: its runs with their step counts, or one run's steps.

Works whether the scheduler is up or not (the records say which). The project's step counts
come from one grouped query, so a project of thousands of runs answers at once. The hosts'
health (unreachable since when, and why) comes with them (:mod:`orchestrator.app.host_health`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.app.host_health import HostHealthInfo, hosts_health
from orchestrator.app.records import OutputInfo, Record, RunInfo, StepCounts, StepInfo, as_utc, elapsed_s
from orchestrator.app.scheduler import SchedulerState, scheduler_state
from orchestrator.errors import UsageError
from orchestrator.store import ProjectStore, RunRecord, StepRecord, StepState


@dataclass(frozen=True)
class RunSummary(Record):
    """One row of a project's status: a run, its step counts and how long it took."""

    id: int
    name: str
    protocol: str
    state: str
    host: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    step_counts: StepCounts
    error: str | None

    @classmethod
    def of(cls, run: RunRecord, counts: StepCounts) -> RunSummary:
        return cls(**_summary_fields(run, counts))


def _summary_fields(run: RunRecord, counts: StepCounts) -> dict[str, Any]:
    return {"id": run.id, "name": run.name, "protocol": run.protocol, "state": run.state, "host": run.host,
            "created_at": run.created_at, "started_at": run.started_at, "finished_at": run.finished_at,
            "duration_s": elapsed_s(run.started_at, run.finished_at), "step_counts": counts, "error": run.error}


@dataclass(frozen=True)
class RunDetail(RunSummary):
    """A run with its params, outputs and steps (the steps in the order they started)."""

    params: dict[str, Any]
    outputs: list[OutputInfo]
    steps: list[StepInfo]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "outputs": [output.brief() for output in self.outputs]}


@dataclass(frozen=True)
class ProjectStatus(Record):
    project: str
    scheduler: SchedulerState
    runs: list[RunSummary]
    #: the hosts' health as the scheduler last reported it (hosts it never reported on: absent)
    hosts: list[HostHealthInfo]


@dataclass(frozen=True)
class RunStatus(Record):
    project: str
    scheduler: SchedulerState
    run: RunDetail
    #: the health of the run's host (empty when the scheduler never reported on it)
    hosts: list[HostHealthInfo]


def project_status(target: ProjectTarget) -> ProjectStatus:
    """Every run of the project with its step counts, and whether the scheduler runs."""
    with project_store(target) as (project, store):
        scheduler = scheduler_state(project)
        counts = store.steps.counts_by_run()
        runs = [RunSummary.of(run, StepCounts(counts.get(run.id, {}))) for run in store.runs.list()]
        health = hosts_health(store)
    return ProjectStatus(project.name, scheduler, runs, health)


def run_status(target: ProjectTarget, run_ref: int | str,
               states: Sequence[StepState | str] = ()) -> RunStatus:
    """One run with its steps (only those in ``states``, when given), params and outputs."""
    wanted = step_states(states)
    with project_store(target) as (project, store):
        scheduler = scheduler_state(project)
        detail = run_detail(store, run_ref, wanted)
        health = hosts_health(store, detail.host)
    return RunStatus(project.name, scheduler, detail, health)


def run_detail(store: ProjectStore, run_ref: int | str, states: Sequence[StepState] = ()) -> RunDetail:
    run = store.runs.get(run_ref)
    steps = [StepInfo.of(step) for step in in_start_order(store.steps.list(run.id, states or None))]
    outputs = [OutputInfo.of(output) for output in store.outputs.list(run.id)]
    return RunDetail(**_summary_fields(run, StepCounts(store.steps.counts(run.id))), params=dict(run.params),
                     outputs=outputs, steps=steps)


def run_info(target: ProjectTarget, run_ref: int | str) -> RunInfo:
    """One run's record, by id or name."""
    with project_store(target) as (_project, store):
        return RunInfo.of(store.runs.get(run_ref))


def step_states(values: Sequence[StepState | str]) -> list[StepState]:
    """Step states from their names (``"failed"``); UsageError names a wrong one and the right ones."""
    states = []
    for value in values:
        if isinstance(value, StepState):
            states.append(value)
            continue
        try:
            states.append(StepState(value.lower()))
        except ValueError:
            raise UsageError(f"step state {value!r}: not a step state; use one of "
                             + ", ".join(s.value for s in StepState)) from None
    return states


def in_start_order(steps: Sequence[StepRecord]) -> list[StepRecord]:
    """Steps in the order they started (the order their logs were written), then unstarted ones by id."""
    never = datetime.max.replace(tzinfo=UTC)
    return sorted(steps, key=lambda s: (as_utc(s.started_at) or never, s.id))
