"""A run's step logs: read them, or follow them as they grow until the run ends.

Step logs live in ``<project>/runs/<run>/logs/<step>.log`` (the worker sends the step's
stdout and stderr there, every attempt appended). Following yields whole lines only, so a
line being written is never cut in two; a line without its newline is given at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.app.records import Record, RunInfo
from orchestrator.app.status import in_start_order
from orchestrator.errors import NotFoundError
from orchestrator.objects.params import suggest
from orchestrator.project import Project
from orchestrator.store import RunRecord, StepRecord

FOLLOW_POLL_S = 0.25
_NAMES_LISTED = 10


@dataclass(frozen=True)
class StepLog(Record):
    """A step's log as it is now (``exists`` is False when the step has not written one yet)."""

    step: str
    state: str
    path: Path
    exists: bool
    text: str


@dataclass(frozen=True)
class RunLogs(Record):
    """The logs of a run's steps (or of one step), in the order the steps started."""

    run: RunInfo
    logs: list[StepLog]


@dataclass(frozen=True)
class LogChunk(Record):
    """New text of one step's log while following."""

    step: str
    text: str


@dataclass(frozen=True)
class RunEnded(Record):
    """The last item of a follow: the run reached a final state."""

    run: str
    state: str


def step_log_path(project: Project, run_name: str, step_name: str) -> Path:
    return project.run_dir(run_name) / "logs" / f"{step_name}.log"


def read_logs(target: ProjectTarget, run_ref: int | str, step: str | None = None) -> RunLogs:
    """Every step's log (or one step's), whole. NotFoundError names the run's steps when ``step``
    is not one of them."""
    with project_store(target) as (project, store):
        run = store.runs.get(run_ref)
        steps = _steps(store.steps.list(run.id), run, step)
    logs = []
    for record in steps:
        path = step_log_path(project, run.name, record.name)
        tail = _LogTail(path)
        logs.append(StepLog(record.name, record.state, path, path.exists(), tail.read_new(final=True)))
    return RunLogs(RunInfo.of(run), logs)


def follow_logs(target: ProjectTarget, run_ref: int | str, step: str | None = None,
                poll_s: float = FOLLOW_POLL_S) -> Iterator[LogChunk | RunEnded]:
    """What the run's steps (or one step) write, from the start of their logs, until the run ends.

    Steps that appear later (when the scheduler plans the run) are followed too. The last item
    is a :class:`RunEnded`. Closing the iterator stops following and closes the store.
    """
    with project_store(target) as (project, store):
        run = store.runs.get(run_ref)
        tails = {record.name: _LogTail(step_log_path(project, run.name, record.name))
                 for record in _steps(store.steps.list(run.id), run, step)}
        while True:
            current = store.runs.get(run.id)
            final = current.run_state.is_final
            if step is None:
                for record in store.steps.list(run.id):
                    tails.setdefault(record.name, _LogTail(step_log_path(project, run.name, record.name)))
            more = False
            for name, tail in tails.items():
                text = tail.read_new(final=final)
                if text:
                    yield LogChunk(name, text)
                more = more or tail.more
            if more:
                continue  # a log grew faster than one read: read on before looking at the run again
            if final:
                yield RunEnded(run.name, current.state)
                return
            time.sleep(poll_s)


def find_step(run: RunRecord, steps: Sequence[StepRecord], name: str) -> StepRecord:
    """The step called ``name``; NotFoundError lists the run's steps (with a close match) otherwise."""
    for step in steps:
        if step.name == name:
            return step
    names = [s.name for s in steps]
    if not names:
        raise NotFoundError(f"run {run.name} has no steps yet (it is {run.state})")
    listed = ", ".join(names[:_NAMES_LISTED]) + (
        f" and {len(names) - _NAMES_LISTED} more" if len(names) > _NAMES_LISTED else "")
    raise NotFoundError(f"run {run.name} has no step {name!r}{suggest(name, names)}; its steps: {listed}")


def _steps(steps: Sequence[StepRecord], run: RunRecord, name: str | None) -> list[StepRecord]:
    ordered = in_start_order(steps)
    return ordered if name is None else [find_step(run, ordered, name)]


#: the most one look at a log reads: a follower of a 100 MB log holds this much, not the log
MAX_READ = 1 << 20


@dataclass
class _LogTail:
    """A log file read from where the last read stopped, at most :data:`MAX_READ` at a time;
    only whole lines until ``final`` (or a line longer than a read). ``more`` tells whether the
    file held more than one read took."""

    path: Path
    offset: int = 0
    pending: bytes = field(default=b"")
    more: bool = False

    def read_new(self, final: bool = False) -> str:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(MAX_READ)
                self.more = len(data) == MAX_READ
        except FileNotFoundError:
            data, self.more = b"", False
        self.offset += len(data)
        data = self.pending + data
        if (final and not self.more) or len(data) >= MAX_READ:
            self.pending = b""
        else:
            cut = data.rfind(b"\n") + 1
            data, self.pending = data[:cut], data[cut:]
        return data.decode("utf-8", errors="replace")
