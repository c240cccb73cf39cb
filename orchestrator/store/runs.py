"""Runs, steps, outputs, provenance and the event log of a project store.

Every state change is written in one write transaction together with its event, so the
event log and the current state never disagree, and a reader (``orch status``, the web
server) sees where the project stands even when the scheduler is down.
"""

from __future__ import annotations

import builtins
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, delete, func, insert, select, update

from orchestrator.errors import NotFoundError, UsageError
from orchestrator.names import LOCAL_HOST, check_run_name, default_run_name
from orchestrator.store.clock import now
from orchestrator.store.engine import WRITE
from orchestrator.store.records import EventRecord, OutputRecord, RunRecord, StepRecord
from orchestrator.store.schema import Event, Output, Provenance, Run, RunState, Step, StepState, User

_RUNS = cast(Table, Run.__table__)
_STEPS = cast(Table, Step.__table__)
_EVENTS = cast(Table, Event.__table__)
_OUTPUTS = cast(Table, Output.__table__)
_PROVENANCE = cast(Table, Provenance.__table__)
_USERS = cast(Table, User.__table__)


@dataclass(frozen=True, slots=True)
class InputLink:
    """A run's input param pointing at another run's output."""

    param: str
    producer_run_id: int
    output_name: str


class _Table:
    def __init__(self, engine: Engine, project_id: int) -> None:
        self.engine = engine
        self.project_id = project_id

    def _write(self) -> Any:
        return self.engine.connect().execution_options(**WRITE)


def _event(conn: Connection, kind: str, *, run_id: int | None = None, step_id: int | None = None,
           state: str | None = None, host: str | None = None, job_id: str | None = None,
           message: str | None = None) -> None:
    conn.execute(insert(_EVENTS).values(time=now(), run_id=run_id, step_id=step_id, kind=kind,
                                        state=state, host=host, job_id=job_id, message=message))


class EventLog(_Table):
    """Append-only: there is no update or delete here, and triggers refuse them in the database."""

    def append(self, kind: str, *, run_id: int | None = None, step_id: int | None = None,
               state: str | None = None, host: str | None = None, job_id: str | None = None,
               message: str | None = None) -> None:
        with self._write() as conn, conn.begin():
            _event(conn, kind, run_id=run_id, step_id=step_id, state=state, host=host, job_id=job_id,
                   message=message)

    def last_id(self) -> int:
        """The newest event's id (0 for none): what a page following the project compares."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(_EVENTS.c.id))).scalar() or 0)

    def list(self, run_id: int | None = None, after_id: int = 0,
             limit: int | None = None) -> builtins.list[EventRecord]:
        query = select(_EVENTS).where(_EVENTS.c.id > after_id).order_by(_EVENTS.c.id)
        if run_id is not None:
            query = query.where(_EVENTS.c.run_id == run_id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [EventRecord.from_row(r) for r in conn.execute(query)]


class RunTable(_Table):
    def create(self, protocol: str, params: Mapping[str, Any] | None = None, *, name: str | None = None,
               host: str = LOCAL_HOST, inputs: Iterable[InputLink] = (), comment: str | None = None,
               owner_id: int | None = None) -> RunRecord:
        """Save a run (state CREATED) with its input links; the default name is ``<protocol>-<id>``."""
        short = protocol.rsplit(".", 1)[-1]
        if name is not None:
            check_run_name(name)  # the one set of rules for names (orchestrator.names)
        with self._write() as conn, conn.begin():
            if name is not None and self._id_by_name(conn, name) is not None:
                raise UsageError(f"a run named {name!r} already exists in this project")
            run_id = conn.execute(insert(_RUNS).values(
                project_id=self.project_id, name=name or f"{short}-pending-{now().timestamp()}",
                protocol=protocol, params=dict(params or {}), state=RunState.CREATED.value, host=host,
                owner_id=owner_id, created_at=now(), comment=comment)).inserted_primary_key[0]  # type: ignore[index]
            if name is None:
                copy = 0
                while self._id_by_name(conn, default_run_name(protocol, run_id, copy)) is not None:
                    copy += 1  # a user named a run like a default name by hand
                conn.execute(update(_RUNS).where(_RUNS.c.id == run_id).values(
                    name=default_run_name(protocol, run_id, copy)))
            links = list(inputs)
            if links:
                conn.execute(insert(_PROVENANCE), [
                    {"consumer_run_id": run_id, "param": link.param, "producer_run_id": link.producer_run_id,
                     "output_name": link.output_name} for link in links])
            _event(conn, "run", run_id=run_id, state=RunState.CREATED.value, host=host,
                   message=f"created from {protocol}")
        return self.get(run_id)

    def _id_by_name(self, conn: Connection, name: str) -> int | None:
        return conn.execute(select(_RUNS.c.id).where(_RUNS.c.project_id == self.project_id,
                                                     _RUNS.c.name == name)).scalar()

    def get(self, ref: int | str) -> RunRecord:
        """A run by id or by name (``"12"`` is an id)."""
        with self.engine.connect() as conn:
            query = select(_RUNS).where(_RUNS.c.project_id == self.project_id)
            if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
                row = conn.execute(query.where(_RUNS.c.id == int(ref))).first()
            else:
                row = conn.execute(query.where(_RUNS.c.name == ref)).first()
            if row is None:
                names = conn.execute(select(_RUNS.c.name).where(_RUNS.c.project_id == self.project_id)
                                     ).scalars().all()
                close = difflib.get_close_matches(str(ref), names, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise NotFoundError(f"no run {ref!r} in this project{hint}")
        return RunRecord.from_row(row)

    def list(self, states: Iterable[RunState] | None = None) -> builtins.list[RunRecord]:
        query = select(_RUNS).where(_RUNS.c.project_id == self.project_id).order_by(_RUNS.c.id)
        if states is not None:
            query = query.where(_RUNS.c.state.in_([s.value for s in states]))
        with self.engine.connect() as conn:
            return [RunRecord.from_row(r) for r in conn.execute(query)]

    def update_params(self, run_id: int, params: Mapping[str, Any]) -> None:
        with self._write() as conn, conn.begin():
            conn.execute(update(_RUNS).where(_RUNS.c.id == run_id).values(params=dict(params)))

    def delete(self, run_id: int) -> None:
        with self._write() as conn, conn.begin():
            conn.execute(delete(_RUNS).where(_RUNS.c.id == run_id))
            _event(conn, "run", run_id=run_id, message="deleted")

    def owner(self, run_id: int) -> str | None:
        """The user who created the run (None for runs made before owners were recorded)."""
        query = (select(_USERS.c.name).join(_RUNS, _RUNS.c.owner_id == _USERS.c.id)
                 .where(_RUNS.c.id == run_id, _RUNS.c.project_id == self.project_id))
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    def inputs(self, run_id: int) -> builtins.list[InputLink]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(_PROVENANCE).where(_PROVENANCE.c.consumer_run_id == run_id)).mappings()
            return [InputLink(r["param"], r["producer_run_id"], r["output_name"]) for r in rows]

    def links(self) -> builtins.list[tuple[int, InputLink]]:
        """Every input link of the project's runs as (consumer run id, link), in one query (a
        flowchart of a thousand runs)."""
        query = (select(_PROVENANCE).join(_RUNS, _RUNS.c.id == _PROVENANCE.c.consumer_run_id)
                 .where(_RUNS.c.project_id == self.project_id))
        with self.engine.connect() as conn:
            return [(r["consumer_run_id"], InputLink(r["param"], r["producer_run_id"], r["output_name"]))
                    for r in conn.execute(query).mappings()]

    def consumers(self, run_id: int) -> builtins.list[int]:
        """Runs that read an output of ``run_id``."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(_PROVENANCE.c.consumer_run_id).distinct()
                                     .where(_PROVENANCE.c.producer_run_id == run_id)).scalars())


class StepTable(_Table):
    def add(self, run_id: int, steps: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Insert steps (dicts with name, func, args, deps, resources, hash, max_retries); name -> id."""
        if not steps:
            return {}
        rows = [{"run_id": run_id, "name": s["name"], "func": s["func"], "args": s.get("args", {}),
                 "deps": list(s.get("deps", [])), "resources": s.get("resources", {}), "hash": s.get("hash"),
                 "state": StepState.PENDING.value, "attempt": 0, "max_retries": s.get("max_retries", 0)}
                for s in steps]
        with self._write() as conn, conn.begin():
            conn.execute(insert(_STEPS), rows)
            ids = conn.execute(select(_STEPS.c.name, _STEPS.c.id).where(_STEPS.c.run_id == run_id))
            return dict(ids.all())

    def list(self, run_id: int, states: Iterable[StepState] | None = None) -> builtins.list[StepRecord]:
        query = select(_STEPS).where(_STEPS.c.run_id == run_id).order_by(_STEPS.c.id)
        if states is not None:
            query = query.where(_STEPS.c.state.in_([s.value for s in states]))
        with self.engine.connect() as conn:
            return [StepRecord.from_row(r) for r in conn.execute(query)]

    def column(self, run_id: int, name: str) -> dict[str, Any]:
        """One column of every step of a run, by step name (cheap for runs of 100k steps)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_STEPS.c.name, _STEPS.c[name]).where(_STEPS.c.run_id == run_id))
            return {step_name: value for step_name, value in rows}

    def get(self, step_id: int) -> StepRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(_STEPS).where(_STEPS.c.id == step_id)).first()
        if row is None:
            raise NotFoundError(f"no step with id {step_id}")
        return StepRecord.from_row(row)

    def counts(self, run_id: int) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(_STEPS.c.state, func.count()).where(_STEPS.c.run_id == run_id)
                                .group_by(_STEPS.c.state))
            return dict(rows.all())

    def counts_by_run(self) -> dict[int, dict[str, int]]:
        """``counts`` of every run of the project in one query (``orch status`` on 1,000 runs)."""
        query = (select(_STEPS.c.run_id, _STEPS.c.state, func.count())
                 .join(_RUNS, _RUNS.c.id == _STEPS.c.run_id).where(_RUNS.c.project_id == self.project_id)
                 .group_by(_STEPS.c.run_id, _STEPS.c.state))
        counts: dict[int, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for run_id, state, count in conn.execute(query):
                counts.setdefault(run_id, {})[state] = count
        return counts

    def update(self, step_id: int, **fields: Any) -> None:
        """Change fields of a step's definition without a state change (e.g. its hash before a re-run);
        states and attempts change only through :mod:`orchestrator.store.lifecycle`."""
        forbidden = {"state", "attempt", "failed_attempts"} & set(fields)
        if forbidden:
            raise ValueError(f"{', '.join(sorted(forbidden))} change through the lifecycle, not update()")
        with self._write() as conn, conn.begin():
            conn.execute(update(_STEPS).where(_STEPS.c.id == step_id).values(**fields))

    def delete(self, step_ids: Sequence[int]) -> None:
        """Remove steps a re-planned run no longer has."""
        if step_ids:
            with self._write() as conn, conn.begin():
                conn.execute(delete(_STEPS).where(_STEPS.c.id.in_(list(step_ids))))


class OutputTable(_Table):
    def get(self, run_id: int, name: str) -> OutputRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(_OUTPUTS).where(_OUTPUTS.c.run_id == run_id,
                                                      _OUTPUTS.c.name == name)).first()
            if row is None:
                names = conn.execute(select(_OUTPUTS.c.name).where(_OUTPUTS.c.run_id == run_id)).scalars().all()
                raise NotFoundError(f"run {run_id} has no output {name!r}; it has: {', '.join(names) or 'none'}")
        return OutputRecord.from_row(row)

    def list(self, run_id: int) -> builtins.list[OutputRecord]:
        with self.engine.connect() as conn:
            return [OutputRecord.from_row(r) for r in conn.execute(
                select(_OUTPUTS).where(_OUTPUTS.c.run_id == run_id).order_by(_OUTPUTS.c.id))]

    def names_by_run(self) -> dict[int, builtins.list[tuple[str, str]]]:
        """(name, type) of every output of the project's runs, by run id, in one query."""
        query = (select(_OUTPUTS.c.run_id, _OUTPUTS.c.name, _OUTPUTS.c.type_name)
                 .join(_RUNS, _RUNS.c.id == _OUTPUTS.c.run_id)
                 .where(_RUNS.c.project_id == self.project_id).order_by(_OUTPUTS.c.id))
        found: dict[int, builtins.list[tuple[str, str]]] = {}
        with self.engine.connect() as conn:
            for run_id, name, type_name in conn.execute(query):
                found.setdefault(run_id, []).append((name, type_name))
        return found
