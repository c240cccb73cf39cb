"""What the application layer returns: plain dataclasses, detached from the store, JSON-ready
(``to_dict()``: see :mod:`orchestrator.app.serialize`).

The records shared by several modules live here; a module's own records live with it
(``ProjectStatus`` in :mod:`.status`, ``SetPage`` in :mod:`.sets`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.app.serialize import Record, as_utc, elapsed_s, jsonable
from orchestrator.store import OutputRecord, RunRecord, RunState, StepRecord, StepState

__all__ = ["OutputInfo", "Record", "RunInfo", "StepCounts", "StepInfo", "as_utc", "elapsed_s", "jsonable"]


@dataclass(frozen=True)
class StepCounts(Record):
    """How many steps of a run are in each state."""

    by_state: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    def __getitem__(self, state: StepState | str) -> int:
        return self.by_state.get(state.value if isinstance(state, StepState) else state, 0)

    @property
    def finished(self) -> int:
        return self[StepState.FINISHED]

    def to_dict(self) -> dict[str, Any]:
        """``{"total": n, "pending": n, ...}`` with every step state present (zeros included)."""
        return {"total": self.total, **{state.value: self[state] for state in StepState}}


@dataclass(frozen=True)
class RunInfo(Record):
    """A run as submitted, restarted or waited for."""

    id: int
    name: str
    protocol: str
    state: str
    host: str
    params: dict[str, Any]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, run: RunRecord) -> RunInfo:
        return cls(run.id, run.name, run.protocol, run.state, run.host, dict(run.params), run.error,
                   run.created_at, run.started_at, run.finished_at)

    @property
    def run_state(self) -> RunState:
        return RunState(self.state)

    @property
    def duration_s(self) -> float | None:
        return elapsed_s(self.started_at, self.finished_at)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "duration_s": self.duration_s}


@dataclass(frozen=True)
class StepInfo(Record):
    """One step of a run: where and how it ran."""

    id: int
    name: str
    state: str
    attempt: int
    max_retries: int
    host: str | None
    worker: str | None
    pid: int | None
    job_id: str | None
    gpus: list[int] | None
    deps: list[str]
    resources: dict[str, Any]
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    peak_memory_mb: float | None
    error: str | None

    @classmethod
    def of(cls, step: StepRecord) -> StepInfo:
        running = step.state == StepState.RUNNING.value
        duration = step.duration_s if step.duration_s is not None else (
            elapsed_s(step.started_at, None) if running else None)
        return cls(step.id, step.name, step.state, step.attempt, step.max_retries, step.host, step.worker, step.pid,
                   step.job_id, step.gpus, list(step.deps), dict(step.resources), step.queued_at, step.started_at,
                   step.finished_at, duration, step.peak_memory_mb, step.error)


@dataclass(frozen=True)
class OutputInfo(Record):
    """A registered output of a run: a set, a file or folder, or a value."""

    run_id: int
    name: str
    type_name: str
    set_id: int | None
    path: str | None
    value: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def of(cls, output: OutputRecord) -> OutputInfo:
        return cls(output.run_id, output.name, output.type_name, output.set_id, output.path,
                   dict(output.value) if output.value is not None else None, output.created_at)

    def brief(self) -> dict[str, Any]:
        """Name, type and path: what a run's status lists of each output."""
        return {"name": self.name, "type": self.type_name, "path": self.path}
