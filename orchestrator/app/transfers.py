"""Files moving to and from hosts without the shared file system, read from the store alone."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.app.serialize import Record
from orchestrator.transfer.status import TransferCall, read_transfers

DEFAULT_RECENT = 10


@dataclass(frozen=True)
class TransferReport(Record):
    """The staging calls moving files now (``active``) and the last ones that ended (``recent``)."""

    project: str
    active: list[TransferCall]
    recent: list[TransferCall]

    @property
    def moving(self) -> bool:
        """Whether something still moves (some active call is not stalled)."""
        return any(not call.stalled for call in self.active)


def transfer_status(target: ProjectTarget, run_ref: int | str | None = None, host: str | None = None,
                    recent: int = DEFAULT_RECENT) -> TransferReport:
    """What is being moved (of one run, or to one host, when given) and the ``recent`` last calls."""
    with project_store(target) as (project, store):
        run_id = store.runs.get(run_ref).id if run_ref is not None else None
        status = read_transfers(store.engine, store.project_id, run_id=run_id, host=host, recent=recent)
    return TransferReport(project.name, status.active, status.recent)
