"""The event log: every state change of runs and steps, read from the store (append-only).

:func:`list_events` reads what is there (after an event id, for a client that polls);
:func:`follow_events` keeps reading until the run ends, for a live view.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.app.logs import FOLLOW_POLL_S, find_step
from orchestrator.app.serialize import Record, as_utc
from orchestrator.errors import NotFoundError, UsageError
from orchestrator.store import EventRecord, ProjectStore


@dataclass(frozen=True)
class EventInfo(Record):
    """One event: a run's or a step's new state (with where it runs), or an output registered.
    ``time`` is in UTC."""

    id: int
    time: datetime
    kind: str
    step: str | None
    state: str | None
    host: str | None
    job_id: str | None
    message: str | None


class _StepNames:
    """Step id -> name, read from the store when an id is new (steps appear as runs are planned)."""

    def __init__(self, store: ProjectStore) -> None:
        self.store = store
        self.names: dict[int, str] = {}

    def load_run(self, run_id: int) -> None:
        self.names.update({step.id: step.name for step in self.store.steps.list(run_id)})

    def name(self, step_id: int | None, run_id: int | None) -> str | None:
        if step_id is None:
            return None
        if step_id not in self.names and run_id is not None:
            self.load_run(run_id)
        if step_id not in self.names:
            try:
                self.names[step_id] = self.store.steps.get(step_id).name
            except NotFoundError:  # a step a re-planned run no longer has
                return f"#{step_id}"
        return self.names[step_id]

    def info(self, event: EventRecord) -> EventInfo:
        return EventInfo(event.id, as_utc(event.time) or event.time, event.kind,
                         self.name(event.step_id, event.run_id), event.state, event.host, event.job_id, event.message)


def list_events(target: ProjectTarget, run_ref: int | str | None = None, *, step: str | None = None,
                after_id: int = 0, limit: int | None = None) -> list[EventInfo]:
    """The project's events (or one run's, or one step's), oldest first, after ``after_id``."""
    with project_store(target) as (_project, store):
        names = _StepNames(store)
        run_id, step_id = _scope(store, names, run_ref, step)
        events = store.events.list(run_id=run_id, after_id=after_id,
                                   limit=limit if step_id is None else None)
        if step_id is not None:
            events = [event for event in events if event.step_id == step_id][:limit]
        return [names.info(event) for event in events]


def follow_events(target: ProjectTarget, run_ref: int | str, *, step: str | None = None, after_id: int = 0,
                  poll_s: float = FOLLOW_POLL_S) -> Iterator[EventInfo]:
    """A run's events (or one step's) as they are written, until the run has ended and its last
    event has been given. Closing the iterator stops following and closes the store."""
    with project_store(target) as (_project, store):
        names = _StepNames(store)
        run_id, step_id = _scope(store, names, run_ref, step)
        assert run_id is not None  # a run was named
        last_id = after_id
        while True:
            final = store.runs.get(run_id).run_state.is_final  # read first: its final event is then listed
            events = store.events.list(run_id=run_id, after_id=last_id)
            if events:
                last_id = events[-1].id
            for event in events:
                if step_id is None or event.step_id == step_id:
                    yield names.info(event)
            if final:
                return
            time.sleep(poll_s)


def _scope(store: ProjectStore, names: _StepNames, run_ref: int | str | None,
           step: str | None) -> tuple[int | None, int | None]:
    """The run id and the step id (when a step is named) that the events are filtered on."""
    if run_ref is None:
        if step is not None:
            raise UsageError(f"step {step!r}: name its run too (step names are per run)")
        return None, None
    run = store.runs.get(run_ref)
    names.load_run(run.id)
    if step is None:
        return run.id, None
    return run.id, find_step(run, store.steps.list(run.id), step).id
