"""Queue systems: the registry of backends, one module (and one job script template) each.

``BACKENDS`` is the one list of queue systems: the kinds a hosts file accepts, their keys, the
executors the scheduler makes, the pilots and ``orch hosts check`` all derive from it. Adding
a queue system is writing its module (a :class:`QueueBackend`, see :mod:`.base`) and its
template, and adding it here.
"""

from __future__ import annotations

from orchestrator.hosts.config.model import HostConfig
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

BACKENDS: dict[str, type[QueueBackend]] = {backend.kind: backend for backend in (SlurmBackend, SgeBackend, PbsBackend)}


def backend_for(host: HostConfig) -> QueueBackend:
    """The queue backend of ``host``; a host without a queue is an error."""
    try:
        return BACKENDS[host.kind](host)
    except KeyError:
        raise HostError(f"host {host.name!r} is of kind {host.kind!r}, which has no queue") from None


__all__ = ["BACKENDS", "JobAccounting", "JobRequest", "JobState", "JobStatus", "QueueBackend", "backend_for",
           "safe_job_name"]
