"""The life of runs and steps: every change of their state happens here, and only here.

Who writes: the scheduler (queue, start, finish, fail, retry, requeue after a crash), the
workers of the local host (a step's start and end, through the fast path in
:mod:`orchestrator.store.step_writer`, which applies the same rules), the scheduler again for
steps that ran elsewhere (their outcome records), and the front ends (cancel, restart) through
the application layer. All of them go through the rules below:

- every transition has the states it may come from (:data:`STEP_RULES`, :data:`RUN_RULES`);
  a change from any other state is not applied (the caller learns it: ``False``, or an error
  for the user-facing ones);
- a step's writes carry the attempt they belong to: ``attempt`` counts every attempt ever
  started for the step and is never reused, so a late write from an earlier attempt (an
  orphaned batch job, a worker that came back) is refused instead of overwriting the end of
  the current one. FINISHED is final for an attempt: a retry cannot overwrite it;
- the retry budget is ``failed_attempts`` in the store, so it survives scheduler restarts;
  a restart of the run by the user gives the budget back;
- a step's end and what it registered (its sets) commit in one transaction, as do a run's
  end and its outputs: a crash in between leaves neither half.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, or_, select, update

from orchestrator.errors import UsageError
from orchestrator.store.engine import WRITE
from orchestrator.store.records import RunRecord, StepRecord
from orchestrator.store.schema import Event, ItemSetRow, Output, Run, RunState, Step, StepState

if TYPE_CHECKING:
    from orchestrator.protocol.sets import PendingSet

_RUNS = cast(Table, Run.__table__)
_STEPS = cast(Table, Step.__table__)
_EVENTS = cast(Table, Event.__table__)
_OUTPUTS = cast(Table, Output.__table__)
_SETS = cast(Table, ItemSetRow.__table__)

S = StepState
R = RunState


class StepChange(enum.StrEnum):
    QUEUE = "queue"  # the scheduler hands a new attempt to a host (PENDING, or FAILED: a retry)
    START = "start"  # the attempt began on its worker
    FINISH = "finish"
    FAIL = "fail"
    CANCEL = "cancel"
    REQUEUE = "requeue"  # after a scheduler crash: the attempt is lost, the step waits again
    RESET = "reset"  # a re-planned run runs the step again (changed, or never finished)


class RunChange(enum.StrEnum):
    QUEUE = "queue"
    START = "start"
    FINISH = "finish"
    FAIL = "fail"
    CANCEL = "cancel"
    RESTART = "restart"


@dataclass(frozen=True)
class Rule:
    """A transition: the state it leads to, the states it may come from, whether it is fenced by
    the attempt (the write names its attempt and is refused for any other)."""

    to: Any
    sources: tuple[Any, ...]
    fenced: bool = False


STEP_RULES: dict[StepChange, Rule] = {
    StepChange.QUEUE: Rule(S.QUEUED, (S.PENDING, S.FAILED), fenced=True),
    StepChange.START: Rule(S.RUNNING, (S.QUEUED,), fenced=True),
    StepChange.FINISH: Rule(S.FINISHED, (S.QUEUED, S.RUNNING), fenced=True),
    StepChange.FAIL: Rule(S.FAILED, (S.QUEUED, S.RUNNING), fenced=True),
    StepChange.CANCEL: Rule(S.CANCELLED, (S.PENDING, S.QUEUED, S.RUNNING)),
    StepChange.REQUEUE: Rule(S.PENDING, (S.QUEUED, S.RUNNING), fenced=True),
    StepChange.RESET: Rule(S.PENDING, (S.PENDING, S.FINISHED, S.FAILED, S.CANCELLED)),
}

RUN_RULES: dict[RunChange, Rule] = {
    RunChange.QUEUE: Rule(R.QUEUED, (R.CREATED,)),
    RunChange.START: Rule(R.RUNNING, (R.QUEUED,)),
    RunChange.FINISH: Rule(R.FINISHED, (R.RUNNING,)),
    RunChange.FAIL: Rule(R.FAILED, (R.QUEUED, R.RUNNING)),
    RunChange.CANCEL: Rule(R.CANCELLED, (R.CREATED, R.QUEUED, R.RUNNING)),
    RunChange.RESTART: Rule(R.QUEUED, (R.CREATED, R.FINISHED, R.FAILED, R.CANCELLED)),
}

#: what a step's row forgets when a new attempt is queued or the step is reset
_ATTEMPT_FIELDS = {"worker": None, "pid": None, "proc_start": None, "job_id": None, "gpus": None,
                   "started_at": None, "finished_at": None, "duration_s": None, "peak_memory_mb": None,
                   "result": None, "error": None, "accounting": None}


class TransitionRefused(UsageError):
    """A user asked for a change the run's state does not allow (cancel a finished run, ...)."""


def now() -> datetime:
    return datetime.now(UTC)


def _values(states: Iterable[Any]) -> list[str]:
    return [state.value for state in states]


@dataclass(frozen=True)
class QueuedAttempt:
    """A new attempt of a step handed to a host: ``attempt`` is the stored attempt + 1."""

    step_id: int
    attempt: int
    host: str
    hash: str | None = None
    queued_at: datetime = field(default_factory=now)


@dataclass(frozen=True)
class StepEnd:
    """An attempt that ended well: its result, its start fields when it was never recorded
    RUNNING (else empty), and its end fields (finished_at, duration_s, peak_memory_mb)."""

    step_id: int
    attempt: int
    result: Any
    started: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOutput:
    """One typed output of a run, registered with the run's end."""

    name: str
    type_name: str
    set_id: int | None = None
    path: str | None = None
    value: Mapping[str, Any] | None = None


class Lifecycle:
    """The transitions of one project's runs and steps (see the module docstring)."""

    def __init__(self, engine: Any, project_id: int) -> None:
        self.engine = engine
        self.project_id = project_id

    def _write(self) -> Connection:
        return cast(Connection, self.engine.connect().execution_options(**WRITE))

    @staticmethod
    def _event(conn: Connection, kind: str, *, run_id: int | None, step_id: int | None = None,
               state: str | None = None, host: str | None = None, job_id: str | None = None,
               message: str | None = None, time: datetime | None = None) -> None:
        conn.execute(insert(_EVENTS).values(time=time or now(), run_id=run_id, step_id=step_id, kind=kind,
                                            state=state, host=host, job_id=job_id, message=message))

    # ================================================================== runs
    def _run_change(self, conn: Connection, run_id: int, change: RunChange, values: dict[str, Any],
                    message: str | None) -> bool:
        rule = RUN_RULES[change]
        result = conn.execute(update(_RUNS).where(_RUNS.c.id == run_id, _RUNS.c.project_id == self.project_id,
                                                  _RUNS.c.state.in_(_values(rule.sources)))
                              .values(state=rule.to.value, **values))
        if result.rowcount != 1:
            return False
        self._event(conn, "run", run_id=run_id, state=rule.to.value, message=message)
        return True

    def _refused(self, conn: Connection, run_id: int, change: RunChange) -> TransitionRefused:
        row = conn.execute(select(_RUNS.c.name, _RUNS.c.state).where(_RUNS.c.id == run_id)).first()
        if row is None:
            return TransitionRefused(f"no run with id {run_id}")
        if change is RunChange.RESTART:
            return TransitionRefused(f"run {row.name} is {row.state}: it is already queued or running")
        if change is RunChange.CANCEL:
            return TransitionRefused(f"run {row.name} is already {row.state}")
        return TransitionRefused(f"run {row.name} is {row.state}: cannot {change.value} it")

    def queue_run(self, run_id: int, message: str = "queued") -> None:
        """A saved run (CREATED) goes to the scheduler."""
        with self._write() as conn, conn.begin():
            if not self._run_change(conn, run_id, RunChange.QUEUE, {}, message):
                raise self._refused(conn, run_id, RunChange.QUEUE)

    def start_run(self, run_id: int, message: str | None = None) -> bool:
        """QUEUED -> RUNNING; False when the run was RUNNING already (a scheduler resuming it) or moved on."""
        with self._write() as conn, conn.begin():
            return self._run_change(conn, run_id, RunChange.START,
                                    {"started_at": now(), "finished_at": None, "error": None}, message)

    def finish_run(self, run_id: int, outputs: Sequence[RunOutput], message: str | None = None) -> bool:
        """RUNNING -> FINISHED with its outputs (replacing those of an earlier run), in one transaction."""
        with self._write() as conn, conn.begin():
            if not self._run_change(conn, run_id, RunChange.FINISH, {"finished_at": now()}, message):
                return False
            names = [output.name for output in outputs]
            if names:
                conn.execute(delete(_OUTPUTS).where(_OUTPUTS.c.run_id == run_id, _OUTPUTS.c.name.in_(names)))
                conn.execute(insert(_OUTPUTS), [
                    {"run_id": run_id, "name": o.name, "type_name": o.type_name, "set_id": o.set_id,
                     "path": o.path, "value": dict(o.value) if o.value else None, "created_at": now()}
                    for o in outputs])
                for output in outputs:
                    self._event(conn, "output", run_id=run_id, message=f"output {output.name} ({output.type_name})")
            return True

    def fail_run(self, run_id: int, error: str) -> bool:
        """QUEUED/RUNNING -> FAILED with the reason (the scheduler ends its steps first)."""
        with self._write() as conn, conn.begin():
            return self._run_change(conn, run_id, RunChange.FAIL, {"finished_at": now(), "error": error}, error)

    def cancel_run(self, run_id: int, reason: str = "cancelled by user") -> list[StepRecord]:
        """The run and its unfinished steps become CANCELLED in one transaction.

        Returns the steps that were queued or running, for the caller to stop their processes
        and jobs (the state is written first, so nobody retries them). A run that already
        ended is refused with a message naming its state.
        """
        with self._write() as conn, conn.begin():
            active = [StepRecord.from_row(row) for row in conn.execute(
                select(_STEPS).where(_STEPS.c.run_id == run_id, _STEPS.c.state.in_(_values((S.QUEUED, S.RUNNING)))))]
            if not self._run_change(conn, run_id, RunChange.CANCEL, {"finished_at": now()}, reason):
                raise self._refused(conn, run_id, RunChange.CANCEL)
            self._cancel_steps_of(conn, run_id, reason, STEP_RULES[StepChange.CANCEL].sources)
        return active

    def restart_run(self, run_id: int) -> RunRecord:
        """A run that ended (or was only saved) is queued again; its retry budget is given back."""
        with self._write() as conn, conn.begin():
            state = conn.execute(select(_RUNS.c.state).where(_RUNS.c.id == run_id)).scalar()
            if not self._run_change(conn, run_id, RunChange.RESTART, {"error": None},
                                    f"restarted (was {state})"):
                raise self._refused(conn, run_id, RunChange.RESTART)
            conn.execute(update(_STEPS).where(_STEPS.c.run_id == run_id).values(failed_attempts=0))
            row = conn.execute(select(_RUNS).where(_RUNS.c.id == run_id)).one()
        return RunRecord.from_row(row)

    def _cancel_steps_of(self, conn: Connection, run_id: int, reason: str, sources: Sequence[StepState]) -> None:
        ids = list(conn.execute(select(_STEPS.c.id).where(_STEPS.c.run_id == run_id,
                                                          _STEPS.c.state.in_(_values(sources)))).scalars())
        if ids:
            self._steps_change(conn, ids, StepChange.CANCEL, {"finished_at": now()}, reason)

    # ================================================================== steps
    def _steps_change(self, conn: Connection, step_ids: Sequence[int], change: StepChange, values: dict[str, Any],
                      message: str | None, sources: Sequence[StepState] | None = None) -> list[int]:
        """An unfenced change of several steps (from ``sources``, by default all the rule allows);
        returns the ids changed, their events written."""
        rule = STEP_RULES[change]
        allowed = _values(sources if sources is not None else rule.sources)
        changed = list(conn.execute(select(_STEPS.c.id).where(_STEPS.c.id.in_(list(step_ids)),
                                                              _STEPS.c.state.in_(allowed))).scalars())
        if not changed:
            return []
        conn.execute(update(_STEPS).where(_STEPS.c.id.in_(changed), _STEPS.c.state.in_(allowed))
                     .values(state=rule.to.value, **values))
        run_ids = dict(conn.execute(select(_STEPS.c.id, _STEPS.c.run_id).where(_STEPS.c.id.in_(changed))).all())
        conn.execute(insert(_EVENTS), [{"time": now(), "run_id": run_ids[i], "step_id": i, "kind": "step",
                                        "state": rule.to.value, "host": None, "job_id": None, "message": message}
                                       for i in changed])
        return changed

    def _fenced(self, conn: Connection, step_id: int, attempt: int, change: StepChange,
                values: Mapping[str, Any]) -> bool:
        rule = STEP_RULES[change]
        result = conn.execute(update(_STEPS).where(_STEPS.c.id == step_id, _STEPS.c.attempt == attempt,
                                                   _STEPS.c.state.in_(_values(rule.sources)))
                              .values(state=rule.to.value, **values))
        return bool(result.rowcount == 1)

    def queue_steps(self, attempts: Sequence[QueuedAttempt]) -> list[int]:
        """New attempts handed to hosts, in one transaction; the ids actually queued.

        Each is applied only if the step waits (PENDING) or its previous attempt failed, and its
        stored attempt is the one before: a step that finished meanwhile (a worker that wrote
        FINISHED and then died) or that someone else queued is left alone.
        """
        if not attempts:
            return []
        rule = STEP_RULES[StepChange.QUEUE]
        with self._write() as conn, conn.begin():
            conn.execute(
                update(_STEPS).where(_STEPS.c.id == bindparam("_id"), _STEPS.c.attempt == bindparam("_previous"),
                                     or_(*(_STEPS.c.state == state for state in _values(rule.sources))))
                .values(state=rule.to.value, attempt=bindparam("_attempt"), host=bindparam("_host"),
                        hash=bindparam("_hash"), queued_at=bindparam("_queued_at"), **_ATTEMPT_FIELDS),
                [{"_id": a.step_id, "_previous": a.attempt - 1, "_attempt": a.attempt, "_host": a.host,
                  "_hash": a.hash, "_queued_at": a.queued_at} for a in attempts])
            wanted = {a.step_id: a for a in attempts}
            rows = conn.execute(select(_STEPS.c.id, _STEPS.c.run_id, _STEPS.c.state, _STEPS.c.attempt)
                                .where(_STEPS.c.id.in_(list(wanted)))).all()
            queued = [row for row in rows
                      if row.state == rule.to.value and row.attempt == wanted[row.id].attempt]
            if queued:
                conn.execute(insert(_EVENTS), [
                    {"time": wanted[row.id].queued_at, "run_id": row.run_id, "step_id": row.id, "kind": "step",
                     "state": rule.to.value, "host": wanted[row.id].host, "job_id": None,
                     "message": f"attempt {row.attempt}"} for row in queued])
        return [row.id for row in queued]

    def start_step(self, step_id: int, attempt: int, **fields: Any) -> bool:
        """The attempt began (worker, pid, proc_start, host, gpus, started_at, job_id)."""
        with self._write() as conn, conn.begin():
            if not self._fenced(conn, step_id, attempt, StepChange.START, fields):
                return False
            run_id = conn.execute(select(_STEPS.c.run_id).where(_STEPS.c.id == step_id)).scalar()
            self._event(conn, "step", run_id=run_id, step_id=step_id, state=S.RUNNING.value,
                        host=fields.get("host"), job_id=fields.get("job_id"), time=fields.get("started_at"))
        return True

    def finish_step(self, step_id: int, attempt: int, result: Any, sets: Sequence[PendingSet] = (),
                    started: Mapping[str, Any] | None = None, **fields: Any) -> bool:
        """The attempt ended well: its sets are created, their placeholders in ``result`` replaced
        by their ids, and the step recorded FINISHED, all in one transaction.

        ``started`` holds the start fields of an attempt that was never recorded RUNNING (a short
        step, or one that ran on another host); its RUNNING event is then written first. A set the
        step made in an earlier run of it is replaced. False: the write was refused (another
        attempt, or the step was cancelled) and nothing was created.
        """
        with self._write() as conn, conn.begin():
            return self._finish_in(conn, StepEnd(step_id, attempt, result, dict(started or {}), fields), sets)

    def finish_steps(self, ends: Sequence[StepEnd]) -> list[int]:
        """Several attempts that ended well and registered no set, in one transaction (the
        scheduler records a batch of reported ends at once); the ids of those recorded."""
        if not ends:
            return []
        with self._write() as conn, conn.begin():
            return [end.step_id for end in ends if self._finish_in(conn, end, ())]

    def _finish_in(self, conn: Connection, end: StepEnd, sets: Sequence[PendingSet]) -> bool:
        row = self._lock_step(conn, end.step_id)
        rule = STEP_RULES[StepChange.FINISH]
        if row is None or row.attempt != end.attempt or row.state not in _values(rule.sources):
            return False
        ids: dict[str, int] = {}
        if sets:
            from orchestrator.protocol.sets import substitute_set_ids
            from orchestrator.store.sets import create_filled_set_in

            self._drop_sets_of(conn, end.step_id)
            for pending in sets:  # in registration order: a set's properties may name earlier ones
                ids[pending.name] = create_filled_set_in(conn, self.engine, pending.name, pending.item_type,
                                                         pending.columns, substitute_set_ids(pending.properties, ids),
                                                         row.run_id, end.step_id)
        result = substitute_set_ids(end.result, ids) if ids else end.result
        values = {**end.started, **end.fields, "result": result, "error": None}
        self._start_event_if_needed(conn, row, end.started or None)
        self._fenced(conn, end.step_id, end.attempt, StepChange.FINISH, values)
        self._event(conn, "step", run_id=row.run_id, step_id=end.step_id, state=S.FINISHED.value,
                    host=values.get("host"), job_id=values.get("job_id"),
                    message=f"{len(ids)} set(s) registered" if ids else None)
        return True

    def fail_step(self, step_id: int, attempt: int, error: str, message: str | None = None,
                  started: Mapping[str, Any] | None = None, **fields: Any) -> bool:
        """The attempt failed (its own error, a lost worker, a killed job): one more failure counted."""
        with self._write() as conn, conn.begin():
            row = self._lock_step(conn, step_id)
            rule = STEP_RULES[StepChange.FAIL]
            if row is None or row.attempt != attempt or row.state not in _values(rule.sources):
                return False
            values = {**(started or {}), **fields, "error": error, "failed_attempts": _STEPS.c.failed_attempts + 1}
            values.setdefault("finished_at", now())
            self._start_event_if_needed(conn, row, started)
            self._fenced(conn, step_id, attempt, StepChange.FAIL, values)
            self._event(conn, "step", run_id=row.run_id, step_id=step_id, state=S.FAILED.value,
                        host=values.get("host"), job_id=values.get("job_id"),
                        message=message or (error.splitlines()[0] if error else None))
        return True

    def _start_event_if_needed(self, conn: Connection, row: Any, started: Mapping[str, Any] | None) -> None:
        if row.state == S.QUEUED.value:
            started = started or {}
            self._event(conn, "step", run_id=row.run_id, step_id=row.id, state=S.RUNNING.value,
                        host=started.get("host"), job_id=started.get("job_id"), time=started.get("started_at"))

    @staticmethod
    def _lock_step(conn: Connection, step_id: int) -> Any:
        query = select(_STEPS.c.id, _STEPS.c.run_id, _STEPS.c.state, _STEPS.c.attempt).where(_STEPS.c.id == step_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        return conn.execute(query).first()

    def _drop_sets_of(self, conn: Connection, step_id: int) -> None:
        """The sets an earlier run of this step registered (a re-run replaces them)."""
        conn.execute(delete(_SETS).where(_SETS.c.step_id == step_id))

    def annotate_step(self, step_id: int, attempt: int, **fields: Any) -> bool:
        """Facts about the current attempt that change no state (its job id, its accounting)."""
        if "state" in fields or "attempt" in fields:
            raise ValueError("annotate_step changes no state or attempt: use a transition")
        with self._write() as conn, conn.begin():
            result = conn.execute(update(_STEPS).where(_STEPS.c.id == step_id, _STEPS.c.attempt == attempt)
                                  .values(**fields))
        return bool(result.rowcount == 1)

    def cancel_steps(self, step_ids: Sequence[int], reason: str,
                     sources: Sequence[StepState] = (S.PENDING, S.QUEUED)) -> list[int]:
        """Steps that will not run (a run dropped or failed); ``sources`` bounds which states are ended."""
        if not step_ids:
            return []
        if not set(sources) <= set(STEP_RULES[StepChange.CANCEL].sources):
            raise ValueError(f"steps cannot be cancelled from {sources}")
        with self._write() as conn, conn.begin():
            return self._steps_change(conn, step_ids, StepChange.CANCEL, {"finished_at": now()}, reason, sources)

    def requeue_steps(self, steps: Sequence[tuple[int, int]], reason: str) -> list[int]:
        """After a scheduler crash: (step id, attempt) pairs whose attempts were lost wait again.

        The attempt count and the failures stay: the next attempt gets a new number, and the
        lost one is not counted as a failure of the step.
        """
        requeued: list[int] = []
        with self._write() as conn, conn.begin():
            for step_id, attempt in steps:
                row = self._lock_step(conn, step_id)
                if row is None or not self._fenced(conn, step_id, attempt, StepChange.REQUEUE,
                                                   {"worker": None, "pid": None, "proc_start": None}):
                    continue
                self._event(conn, "step", run_id=row.run_id, step_id=step_id, state=S.PENDING.value,
                            message=reason)
                requeued.append(step_id)
        return requeued

    def reset_steps(self, resets: Mapping[int, tuple[Mapping[str, Any], str]]) -> list[int]:
        """Steps a re-planned run runs again: step id -> (new definition fields, why). The attempt
        count stays (attempt numbers are never reused); results and errors are cleared."""
        done: list[int] = []
        if not resets:
            return done
        rule = STEP_RULES[StepChange.RESET]
        with self._write() as conn, conn.begin():
            for step_id, (fields, why) in resets.items():
                result = conn.execute(update(_STEPS).where(_STEPS.c.id == step_id,
                                                           _STEPS.c.state.in_(_values(rule.sources)))
                                      .values(state=rule.to.value, hash=None, **_ATTEMPT_FIELDS, **fields))
                if result.rowcount != 1:
                    continue
                run_id = conn.execute(select(_STEPS.c.run_id).where(_STEPS.c.id == step_id)).scalar()
                self._event(conn, "step", run_id=run_id, step_id=step_id, state=S.PENDING.value,
                            message=f"re-run: {why}")
                done.append(step_id)
        return done
