"""Whether each host answers, as the project's scheduler last saw it.

The scheduler writes it (a queue whose commands keep failing past their grace period, SSH
workers that are gone, pilots that never connect); ``orch status``, ``orch queue`` and the
web interface read it, so they can say a host is unreachable, since when and why, while the
scheduler is busy or even after it stopped. Only changes are written: a host that stays
healthy costs nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, delete, insert, select, update

from orchestrator.store.engine import WRITE
from orchestrator.store.schema import HostHealth

_HEALTH = cast(Table, HostHealth.__table__)


class HostState(enum.StrEnum):
    OK = "ok"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class HostHealthRecord:
    host: str
    state: HostState
    since: datetime
    checked_at: datetime
    message: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "state": self.state.value, "since": self.since.isoformat(),
                "checked_at": self.checked_at.isoformat(), "message": self.message}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class HostHealthTable:
    """The hosts' health in one project's store."""

    def __init__(self, engine: Engine, project_id: int) -> None:
        self.engine = engine
        self.project_id = project_id

    def report(self, host: str, state: HostState, message: str | None = None) -> bool:
        """Record what the scheduler sees of ``host``; True when that changed its state."""
        now = datetime.now(UTC)
        key = (_HEALTH.c.project_id == self.project_id) & (_HEALTH.c.host == host)
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            current = conn.execute(select(_HEALTH.c.state).where(key)).scalar()
            if current is None:
                conn.execute(insert(_HEALTH).values(project_id=self.project_id, host=host, state=state.value,
                                                    since=now, checked_at=now, message=message))
                return state is not HostState.OK
            if current == state.value:
                conn.execute(update(_HEALTH).where(key).values(checked_at=now, message=message))
                return False
            conn.execute(update(_HEALTH).where(key).values(state=state.value, since=now, checked_at=now,
                                                           message=message))
            return True

    def forget(self, host: str) -> None:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(delete(_HEALTH).where((_HEALTH.c.project_id == self.project_id) & (_HEALTH.c.host == host)))

    def list(self) -> list[HostHealthRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(_HEALTH).where(_HEALTH.c.project_id == self.project_id)
                                .order_by(_HEALTH.c.host)).mappings().all()
        return [HostHealthRecord(r["host"], HostState(r["state"]), _aware(r["since"]), _aware(r["checked_at"]),
                                 r["message"]) for r in rows]

    def get(self, host: str) -> HostHealthRecord | None:
        return next((record for record in self.list() if record.host == host), None)
