"""The hosts a new run may go to, as a form shows them: their size, whether they answer, and the
GPUs free now where that can be told.

The limits are the hosts file's (cores, memory, GPUs, ``max_jobs``, each queue's node); the health
is what the project's scheduler last reported (:mod:`orchestrator.app.host_health`: never
checked, ok, or unreachable since when and why). Free GPUs are told for a machine (the local host,
an SSH host) from its GPU count less those the project's running steps hold there; a queue's GPUs
are the queue's to give, so none is told for a queue host. Nothing here runs a command on a host
but ``nvidia-smi`` on this machine, for a local host whose file does not count its GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.app.host_health import hosts_health
from orchestrator.app.hosts import host_registry, reach
from orchestrator.hosts.config.model import HostConfig, HostKind
from orchestrator.hosts.errors import HostConfigError
from orchestrator.hosts.local_host import declared_gpus
from orchestrator.names import LOCAL_HOST
from orchestrator.store import ProjectStore, RunState, StepState

HEALTH_UNKNOWN = "unknown"


@dataclass(frozen=True)
class QueueLimits:
    """One queue of a queue host: what one of its nodes has, and how long a job may run."""

    name: str
    cores: int | None
    memory_mb: int | None
    gpus: int
    gpu_type: str | None
    walltime_s: int | None
    max_jobs: int | None


@dataclass(frozen=True)
class HostChoice:
    """A host as the form's chooser lists it. ``gpus`` is None where unknown; ``gpus_free`` is None
    where it cannot be told (a queue host, or GPUs that could not be counted)."""

    name: str
    kind: str
    description: str
    reach: str
    cores: int | None
    memory_mb: int | None
    gpus: int | None
    gpu_type: str | None
    max_jobs: int | None
    workers: int | None
    #: ``ok``, ``unreachable`` or ``unknown`` (the scheduler never reported on it)
    health: str
    health_since: datetime | None
    health_message: str | None
    gpus_busy: int
    gpus_free: int | None
    queues: list[QueueLimits] = field(default_factory=list)
    default_queue: str | None = None

    @property
    def is_queue(self) -> bool:
        return self.kind not in HostKind.MACHINES


def host_choices(target: ProjectTarget) -> list[HostChoice]:
    """Every host the project can use (its own hosts file included), the local host first."""
    registry = host_registry(target)
    with project_store(target) as (_project, store):
        health = {info.host: info for info in hosts_health(store)}
        busy = _gpus_in_use(store)
    choices = []
    for host in sorted(registry, key=lambda h: (h.name != LOCAL_HOST, h.name)):
        report = health.get(host.name)
        total = _gpu_count(host)
        in_use = busy.get(host.name, 0)
        choices.append(HostChoice(
            host.name, str(host.kind), host.description, reach(host), host.cores, host.memory_mb,
            None if host.is_queue else total, host.gpu_type, host.max_jobs, host.workers,
            report.state if report else HEALTH_UNKNOWN, report.since if report else None,
            report.message if report else None, in_use,
            None if host.is_queue or total is None else max(0, total - in_use),
            [QueueLimits(q.name, q.cores, q.memory_mb, q.gpus, q.gpu_type, q.walltime_s, q.max_jobs)
             for q in host.queues.values()], host.default_queue))
    return choices


def _gpu_count(host: HostConfig) -> int | None:
    """The host's GPUs: the file's count, or for the local host what this machine shows."""
    if host.is_queue:
        return None
    if host.kind != HostKind.LOCAL:
        return host.gpus
    from orchestrator.hosts.gpus import GpuUnavailable, host_gpu_devices

    try:
        devices, _source = host_gpu_devices(declared_gpus(host))
    except (GpuUnavailable, HostConfigError):
        return None  # CUDA_VISIBLE_DEVICES holds fewer than the file says: the run's check says so
    return len(devices)


def _gpus_in_use(store: ProjectStore) -> dict[str, int]:
    """GPUs held by the project's running steps, by host."""
    used: dict[str, int] = {}
    for run in store.runs.list([RunState.RUNNING]):
        for step in store.steps.list(run.id, [StepState.RUNNING]):
            if step.host and step.gpus:
                used[step.host] = used.get(step.host, 0) + len(step.gpus)
    return used
