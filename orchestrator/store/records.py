"""Plain records returned by the store: detached from the database, safe to pass around."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self

from orchestrator.store.schema import RunState, StepState


class _FromRow:
    @classmethod
    def from_row(cls, row: Any) -> Self:
        mapping = row._mapping if hasattr(row, "_mapping") else row
        return cls(**{f.name: mapping[f.name] for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(slots=True)
class RunRecord(_FromRow):
    id: int
    project_id: int
    name: str
    protocol: str
    params: dict[str, Any]
    state: str
    host: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    comment: str | None

    @property
    def run_state(self) -> RunState:
        return RunState(self.state)


@dataclass(slots=True)
class StepRecord(_FromRow):
    id: int
    run_id: int
    name: str
    func: str
    args: dict[str, Any]
    deps: list[str]
    resources: dict[str, Any]
    hash: str | None
    state: str
    attempt: int
    max_retries: int
    failed_attempts: int
    host: str | None
    worker: str | None
    pid: int | None
    proc_start: float | None
    job_id: str | None
    gpus: list[int] | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    peak_memory_mb: float | None
    result: dict[str, Any] | None
    error: str | None
    accounting: dict[str, Any] | None

    @property
    def step_state(self) -> StepState:
        return StepState(self.state)


@dataclass(slots=True)
class EventRecord(_FromRow):
    id: int
    time: datetime
    run_id: int | None
    step_id: int | None
    kind: str
    state: str | None
    host: str | None
    job_id: str | None
    message: str | None


@dataclass(slots=True)
class OutputRecord(_FromRow):
    id: int
    run_id: int
    name: str
    type_name: str
    set_id: int | None
    path: str | None
    value: dict[str, Any] | None
    created_at: datetime
