"""The fast path of the lifecycle: a local worker recording that its step started and ended.

Every step of the local host writes its transitions from the worker that runs it. Through
SQLAlchemy's expression layer each costs about a millisecond of Python on this kind of machine,
which for short steps is more than dask spends on the task itself (measured: the scheduler ran
no-op steps at 35% of the raw dask rate with the generic path, 95% with no writes at all). This
module issues the same statements as plain DBAPI calls on one connection kept for the worker's
life, with the statement text built once per shape so that the driver's statement cache reuses
the prepared statement.

It is a backend of :mod:`orchestrator.store.lifecycle`, not a second set of rules: the states a
change may come from and the attempt fence are the lifecycle's (:data:`STEP_RULES`), and the
columns and how their values are written come from the schema, so the generic path reads back
exactly what this one wrote. Only local workers use it: a SQLite store is written only by
processes on its own machine (steps elsewhere report through the scheduler).

A step that ended before anyone needed to see it running records RUNNING and its end in one
transaction (``started``): the same row and the same two events, one commit instead of two.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import JSON, DateTime, Engine, Table

from orchestrator.store.lifecycle import STEP_RULES, StepChange
from orchestrator.store.schema import Step, StepState

_TABLE = cast(Table, Step.__table__)
#: columns a worker may write (identity, definition and planning columns are not a worker's)
_WRITABLE = frozenset(c.name for c in _TABLE.columns) - {"id", "run_id", "name", "func", "args", "deps",
                                                         "resources", "hash", "state", "attempt", "max_retries",
                                                         "failed_attempts", "queued_at"}
_JSON_COLUMNS = frozenset(c.name for c in _TABLE.columns if isinstance(c.type, JSON))
_TIME_COLUMNS = frozenset(c.name for c in _TABLE.columns if isinstance(c.type, DateTime))
_INSERT_EVENT = ("INSERT INTO events (time, run_id, step_id, kind, state, host, job_id, message) "
                 "VALUES (?, ?, ?, 'step', ?, ?, ?, ?)")


class StepWriter:
    """Records a local step's start and end, one short write transaction each, on a kept connection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.connection: Any = engine.raw_connection()
        self._updates: dict[tuple[StepChange, tuple[str, ...]], str] = {}

    def _value(self, column: str, value: Any) -> Any:
        if value is None:
            return None
        if column in _JSON_COLUMNS:
            return json.dumps(value)
        if column in _TIME_COLUMNS and self.sqlite:
            return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return value

    def _sql(self, text: str) -> str:
        return text if self.sqlite else text.replace("?", "%s")

    def _update_sql(self, change: StepChange, fields: tuple[str, ...]) -> str:
        """The fenced UPDATE of one change with one set of columns, built once."""
        key = (change, fields)
        sql = self._updates.get(key)
        if sql is None:
            unknown = set(fields) - _WRITABLE
            if unknown:
                raise ValueError(f"a worker cannot write step field(s): {', '.join(sorted(unknown))}")
            rule = STEP_RULES[change]
            assignments = [f"{c} = ?" if self.sqlite or c not in _JSON_COLUMNS else f"{c} = CAST(? AS JSON)"
                           for c in ("state", *fields)]
            if change is StepChange.FAIL:
                assignments.append("failed_attempts = failed_attempts + 1")
            marks = ", ".join("?" for _ in rule.sources)
            sql = self._updates[key] = self._sql(
                f"UPDATE steps SET {', '.join(assignments)} WHERE id = ? AND attempt = ? AND state IN ({marks})")
        return sql

    def _apply(self, change: StepChange, step_id: int, run_id: int, attempt: int, fields: Mapping[str, Any],
               message: str | None = None, started: Mapping[str, Any] | None = None) -> bool:
        rule = STEP_RULES[change]
        values_by_column = {**(started or {}), **fields}
        sql = self._update_sql(change, tuple(values_by_column))
        values = [rule.to.value, *(self._value(c, v) for c, v in values_by_column.items()), step_id, attempt,
                  *(s.value for s in rule.sources)]
        now = self._value("started_at", datetime.now(UTC))
        host, job_id = values_by_column.get("host"), values_by_column.get("job_id")
        events = [(now, run_id, step_id, rule.to.value, host, job_id, message)]
        if started is not None:
            events.insert(0, (self._value("started_at", started.get("started_at")) or now, run_id, step_id,
                              StepState.RUNNING.value, host, job_id, None))
        cursor = self.connection.cursor()
        try:
            if self.sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(sql, values)
            applied = cursor.rowcount == 1
            if applied:
                cursor.executemany(self._sql(_INSERT_EVENT), events)
            self.connection.commit()
        except BaseException:
            self.connection.rollback()
            raise
        finally:
            cursor.close()
        return applied

    def start(self, step_id: int, run_id: int, attempt: int, **fields: Any) -> bool:
        """QUEUED -> RUNNING for this attempt (worker, pid, proc_start, host, gpus, started_at, job_id)."""
        return self._apply(StepChange.START, step_id, run_id, attempt, fields)

    def finish(self, step_id: int, run_id: int, attempt: int, started: Mapping[str, Any] | None = None,
               **fields: Any) -> bool:
        """The attempt ended well; ``started``: it was never recorded RUNNING, write that first."""
        return self._apply(StepChange.FINISH, step_id, run_id, attempt, fields, started=started)

    def fail(self, step_id: int, run_id: int, attempt: int, message: str, started: Mapping[str, Any] | None = None,
             **fields: Any) -> bool:
        """The attempt failed (counted against the step's retry budget)."""
        return self._apply(StepChange.FAIL, step_id, run_id, attempt, fields, message=message, started=started)

    def state(self, step_id: int) -> tuple[StepState, int] | None:
        """The step's stored state and attempt (a read: no write lock, no commit to wait for)."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(self._sql("SELECT state, attempt FROM steps WHERE id = ?"), (step_id,))
            row = cursor.fetchone()
            if not self.sqlite:
                self.connection.commit()  # end the read's transaction: the next one must see new rows
        finally:
            cursor.close()
        return None if row is None else (StepState(row[0]), int(row[1]))

    def close(self) -> None:
        self.connection.close()
