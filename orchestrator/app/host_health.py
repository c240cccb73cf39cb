"""Whether each execution host answers, as the project's scheduler last saw it.

The scheduler writes a host's health into the project store when it changes (a queue whose
commands keep failing past their grace period, SSH workers that cannot be started again, pilots
that never connect: unreachable; ok again when the host answers). ``orch status`` and ``orch
queue`` show it from the store, whether the scheduler runs or not: ``checked_at`` says when the
scheduler last wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from orchestrator.app.serialize import Record
from orchestrator.store import ProjectStore
from orchestrator.store.host_health import HostHealthRecord, HostState


@dataclass(frozen=True)
class HostHealthInfo(Record):
    """One host's health: ``ok`` or ``unreachable``, since when, and why."""

    host: str
    state: str
    since: datetime
    checked_at: datetime
    message: str | None

    @property
    def unreachable(self) -> bool:
        return self.state == HostState.UNREACHABLE.value

    @classmethod
    def of(cls, record: HostHealthRecord) -> HostHealthInfo:
        return cls(record.host, record.state.value, record.since, record.checked_at, record.message)


def hosts_health(store: ProjectStore, host: str | None = None) -> list[HostHealthInfo]:
    """Every host the scheduler has reported on (only ``host``, when given), by name."""
    return [HostHealthInfo.of(record) for record in store.hosts.list() if host is None or record.host == host]
