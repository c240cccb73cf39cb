"""Queue systems: one small backend per system (``slurm``, ``sge``, ``pbs``) and the shared poller."""

from __future__ import annotations

from orchestrator.hosts.config.model import HostConfig, HostKind
from orchestrator.hosts.errors import HostError
from orchestrator.hosts.queues.base import (
    JobAccounting,
    JobRequest,
    JobState,
    JobStatus,
    QueueBackend,
    safe_job_name,
)
from orchestrator.hosts.queues.pbs import PbsBackend
from orchestrator.hosts.queues.sge import SgeBackend
from orchestrator.hosts.queues.slurm import SlurmBackend

BACKENDS: dict[HostKind, type[QueueBackend]] = {
    HostKind.SLURM: SlurmBackend,
    HostKind.SGE: SgeBackend,
    HostKind.PBS: PbsBackend,
}


def backend_for(host: HostConfig) -> QueueBackend:
    """The queue backend of ``host``; a host without a queue is an error."""
    try:
        return BACKENDS[host.kind](host)
    except KeyError:
        raise HostError(f"host {host.name!r} is of kind {host.kind.value!r}, which has no queue") from None


__all__ = ["BACKENDS", "JobAccounting", "JobRequest", "JobState", "JobStatus", "QueueBackend", "backend_for",
           "safe_job_name"]
