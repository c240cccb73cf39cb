"""What is being moved, from the store alone (``orch transfer status`` and the web view read this).

:func:`read_transfers` gives typed records (:class:`TransferCall`); :func:`transfer_status` the
same as plain data.

Rows of one staging call share their ``started_at`` (the journal stamps them together), so a
call is a group of rows by (run, step, host, direction, started_at). A call with rows still
queued or running is active; its speed is what it moved over the time since it began, and
it is stalled when no row changed for a while (the process moving it may have died).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, case, func, inspect, or_, select

from orchestrator.store.schema import Run
from orchestrator.store.transfer_tables import TransferState
from orchestrator.transfer.ledger import RECORDS

STALLED_AFTER_S = 30.0
_GROUP = (RECORDS.c.run_id, RECORDS.c.step_id, RECORDS.c.host, RECORDS.c.direction, RECORDS.c.started_at)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _count(state: TransferState) -> Any:
    return func.sum(case((RECORDS.c.state == state.value, 1), else_=0))


@dataclass(frozen=True)
class TransferCall:
    """One staging call (a group of files moved together to or from a host) and how far it got.

    ``speed_bps`` is what it moved over the time since it began; ``eta_s`` what is left at that
    speed (None once it ended); ``stalled`` when nothing changed for a while while rows are open
    (the process moving it may have died); ``moving`` the files in flight now (at most 5).
    """

    run_id: int | None
    step_id: int | None
    host: str
    direction: str
    started_at: datetime | None
    updated_at: datetime | None
    finished_at: datetime | None
    files_total: int
    files_done: int
    files_failed: int
    bytes_total: int
    bytes_done: int
    bytes_left: int
    speed_bps: float
    eta_s: float | None
    stalled: bool
    moving: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain data, times as ISO 8601 in UTC."""
        return {field.name: _plain(getattr(self, field.name)) for field in fields(self)}


@dataclass(frozen=True)
class TransferStatus:
    """The calls moving files now (``active``) and the last ones that ended (``recent``)."""

    active: list[TransferCall]
    recent: list[TransferCall]

    def to_dict(self) -> dict[str, Any]:
        return {"active": [call.to_dict() for call in self.active], "recent": [call.to_dict() for call in self.recent]}


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def transfer_status(engine: Engine, project_id: int, *, run_id: int | None = None, host: str | None = None,
                    recent: int = 10, now: datetime | None = None) -> dict[str, Any]:
    """:func:`read_transfers` as plain data: ``{"active": [call, ...], "recent": [call, ...]}``."""
    return read_transfers(engine, project_id, run_id=run_id, host=host, recent=recent, now=now).to_dict()


def read_transfers(engine: Engine, project_id: int, *, run_id: int | None = None, host: str | None = None,
                   recent: int = 10, now: datetime | None = None) -> TransferStatus:
    """The project's staging calls in progress and the last ``recent`` finished ones (of one run
    or host, when given), each with files and bytes done, left, speed, ETA and what moves now."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(RECORDS.name):
            return TransferStatus([], [])
        project_runs = select(Run.id).where(Run.project_id == project_id)
        where = [or_(RECORDS.c.run_id.in_(project_runs), RECORDS.c.run_id.is_(None))]
        if run_id is not None:
            where.append(RECORDS.c.run_id == run_id)
        if host is not None:
            where.append(RECORDS.c.host == host)
        open_rows = _count(TransferState.QUEUED) + _count(TransferState.RUNNING)
        query = (select(*_GROUP, func.count().label("files_total"), _count(TransferState.DONE).label("files_done"),
                        _count(TransferState.FAILED).label("files_failed"), open_rows.label("files_open"),
                        func.sum(RECORDS.c.bytes_total).label("bytes_total"),
                        func.sum(RECORDS.c.bytes_done).label("bytes_done"),
                        func.sum(RECORDS.c.resumed_from).label("bytes_resumed"),
                        func.max(RECORDS.c.updated_at).label("updated_at"),
                        func.max(RECORDS.c.finished_at).label("finished_at"))
                 .where(and_(*where)).group_by(*_GROUP).order_by(RECORDS.c.started_at.desc()))
        groups = conn.execute(query).mappings().all()
        active = [g for g in groups if g["files_open"]]
        finished = [g for g in groups if not g["files_open"]][:recent]
        moving: dict[tuple[Any, ...], list[str]] = {}
        if active:
            running = conn.execute(select(*_GROUP, RECORDS.c.local_path, RECORDS.c.remote_path).where(
                and_(*where, RECORDS.c.state == TransferState.RUNNING.value)).limit(200))
            for row in running:
                path = row.local_path if row.direction == "in" else row.remote_path
                moving.setdefault(tuple(row[:5]), []).append(path)
    clock = now or datetime.now(UTC)
    return TransferStatus([_call(g, clock, moving.get(tuple(g[c.name] for c in _GROUP), [])) for g in active],
                          [_call(g, clock, []) for g in finished])


def _call(group: Any, now: datetime, moving: list[str]) -> TransferCall:
    started = _aware(group["started_at"])
    updated = _aware(group["updated_at"]) or started
    finished = _aware(group["finished_at"]) if not group["files_open"] else None
    end = finished or (updated if group["files_open"] else now) or now
    elapsed = max((end - started).total_seconds(), 1e-3) if started else None
    moved = int(group["bytes_done"] or 0) - int(group["bytes_resumed"] or 0)
    speed = moved / elapsed if elapsed else 0.0
    left = max(int(group["bytes_total"] or 0) - int(group["bytes_done"] or 0), 0)
    idle = (now - updated).total_seconds() if updated else 0.0
    return TransferCall(
        run_id=group["run_id"], step_id=group["step_id"], host=group["host"], direction=group["direction"],
        started_at=started, updated_at=updated, finished_at=finished, files_total=int(group["files_total"]),
        files_done=int(group["files_done"] or 0), files_failed=int(group["files_failed"] or 0),
        bytes_total=int(group["bytes_total"] or 0), bytes_done=int(group["bytes_done"] or 0), bytes_left=left,
        speed_bps=speed, eta_s=left / speed if group["files_open"] and speed > 0 else None,
        stalled=bool(group["files_open"]) and idle > STALLED_AFTER_S, moving=moving[:5])
