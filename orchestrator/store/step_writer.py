"""The hot path of the store: a worker recording that its step started and ended.

Every step writes its transitions from the worker that runs it. Through SQLAlchemy's
expression layer each costs about a millisecond of Python on this kind of machine, which
for short steps is more than dask spends on the task itself (measured: the scheduler ran
no-op steps at 35% of the raw dask rate with the generic path, 95% with no writes at all).
This module issues the same statements as plain DBAPI calls on one connection kept for the
worker's life, with the statement text built once per shape so that the driver's statement
cache reuses the prepared statement. Values are written in the formats SQLAlchemy's column
types write and read (tests read them back through the generic path).

A step that ended before anyone needed to see it running records RUNNING and its end in one
transaction (``via``): the same row and the same two events, one commit instead of two.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from orchestrator.store.schema import StepState

_STEP_COLUMNS = ("state", "worker", "pid", "host", "job_id", "gpus", "started_at", "attempt", "finished_at",
                 "duration_s", "peak_memory_mb", "result", "error")
_JSON_COLUMNS = frozenset({"gpus", "result"})
_TIME_COLUMNS = frozenset({"started_at", "finished_at"})
_INSERT_EVENT = ("INSERT INTO events (time, run_id, step_id, kind, state, host, job_id, message) "
                 "VALUES (?, ?, ?, 'step', ?, ?, NULL, ?)")


class StepWriter:
    """Records step transitions with one short write transaction each, on a kept connection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.connection: Any = engine.raw_connection()
        self._updates: dict[tuple[tuple[str, ...], int], str] = {}

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

    def _update_sql(self, fields: tuple[str, ...], expected: int) -> str:
        """The UPDATE for one set of columns, built once (the driver caches statements by text)."""
        key = (fields, expected)
        sql = self._updates.get(key)
        if sql is None:
            unknown = set(fields) - set(_STEP_COLUMNS)
            if unknown:
                raise ValueError(f"unknown step field(s): {', '.join(sorted(unknown))}")
            assignments = ", ".join(
                f"{c} = ?" if self.sqlite or c not in _JSON_COLUMNS else f"{c} = CAST(? AS JSON)"
                for c in ("state", *fields))
            marks = ", ".join("?" for _ in range(expected))
            sql = self._updates[key] = self._sql(f"UPDATE steps SET {assignments} WHERE id = ? AND state IN ({marks})")
        return sql

    def transition(self, step_id: int, run_id: int, state: StepState, expected: Sequence[StepState],
                   message: str | None = None, via: StepState | None = None, **fields: Any) -> bool:
        """Set the step's state and ``fields`` if it is in one of ``expected``; log the event.

        ``via`` logs that state's event first (at ``started_at``), for a step that passed
        through it without it being written on its own.
        """
        sql = self._update_sql(tuple(fields), len(expected))
        values = [state.value, *(self._value(c, v) for c, v in fields.items()), step_id, *(s.value for s in expected)]
        now = self._value("started_at", datetime.now(UTC))
        host = fields.get("host")
        events = [(now, run_id, step_id, state.value, host, message)]
        if via is not None:
            events.insert(0, (self._value("started_at", fields.get("started_at")) or now, run_id, step_id,
                              via.value, host, None))
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

    def state(self, step_id: int) -> StepState | None:
        """The step's stored state (a read: no write lock, no commit to wait for)."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(self._sql("SELECT state FROM steps WHERE id = ?"), (step_id,))
            row = cursor.fetchone()
            if not self.sqlite:
                self.connection.commit()  # end the read's transaction: the next one must see new rows
        finally:
            cursor.close()
        return None if row is None else StepState(row[0])

    def close(self) -> None:
        self.connection.close()
