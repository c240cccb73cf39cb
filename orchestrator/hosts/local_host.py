"""The local host's shape: how many worker processes its LocalCluster has, and what each holds.

Pure data, computed from the host's ``[hosts.local]`` section (or the built-in ``local``), so
that ``orch run`` can check a run against the host without starting anything (see
:mod:`orchestrator.hosts.fit`) and the scheduler starts exactly that cluster
(:mod:`orchestrator.scheduler.executors.local`). The rules, each key of the section:

- ``workers``: one-thread worker processes, so at most that many steps at once. Default: one
  per core, fewer when ``memory`` leaves a worker less than :data:`MIN_WORKER_MEMORY_MB`.
  ``orch daemon --workers N`` overrides it.
- ``cores``: split evenly among the workers (the dask resource ``cpus`` of each). A step may
  use more than its worker's share (the OS shares the machine), but never more than
  ``cores`` in all (``cpus`` x ``mpi_ranks``). Without ``cores`` in a hosts file the local host
  is not limited (MPI steps may oversubscribe the machine, as ``mpirun --oversubscribe`` does).
- ``memory``: split evenly among the workers, each of which gets it as its dask memory limit
  (dask restarts a worker whose process goes past 95% of it): a step's ``memory_mb`` must fit
  one worker's share.
- ``gpus`` (else ``CUDA_VISIBLE_DEVICES``, else ``nvidia-smi``): dealt to the workers
  (:func:`~orchestrator.hosts.gpus.deal_gpus`); a step's GPUs come from one worker, so a step
  may ask at most the GPUs one worker holds. ``gpu_sharing = true`` gives every worker every
  GPU. ``gpu_type`` is descriptive.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.hosts.config.model import BUILT_IN_LOCAL_HOST, HostConfig
from orchestrator.hosts.errors import HostConfigError
from orchestrator.hosts.gpus import GpuUnavailable, deal_gpus, detect_gpus, host_gpu_devices

#: the least memory a default layout leaves one worker (a worker process alone uses ~150 MB)
MIN_WORKER_MEMORY_MB = 1024
#: below this a worker could not even start its step: a layout that leaves less is refused
FLOOR_WORKER_MEMORY_MB = 256


def machine_cores() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class LocalHostSpec:
    """The LocalCluster of the local host, and the limits a step is checked against there.

    ``worker_gpus[i]`` are the GPU devices of worker ``i`` (a worker past the end holds none);
    ``env`` is added to every worker's environment (the host's ``env_setup``). ``cores`` and
    ``memory_mb`` are the host's declared size (None: not declared, not checked).
    """

    workers: int = field(default_factory=machine_cores)
    cpus_per_worker: int = 1
    memory_per_worker_mb: int | None = None
    worker_gpus: tuple[tuple[str, ...], ...] = ()
    gpu_sharing: bool = False
    gpu_type: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    name: str = BUILT_IN_LOCAL_HOST.name
    cores: int | None = None
    memory_mb: int | None = None
    #: where the GPUs came from ("gpus = 2", "CUDA_VISIBLE_DEVICES=0,1", ...), for messages
    gpu_source: str = ""

    def __post_init__(self) -> None:
        if self.workers < 1 or self.cpus_per_worker < 1:
            raise ValueError(f"a local host needs at least one worker and one CPU each, got {self}")

    def gpus_of(self, worker: int) -> tuple[str, ...]:
        return self.worker_gpus[worker] if worker < len(self.worker_gpus) else ()

    @property
    def gpu_devices(self) -> list[str]:
        """Every GPU of the host, once each."""
        return list(dict.fromkeys(d for devices in self.worker_gpus for d in devices))

    @property
    def max_step_gpus(self) -> int:
        """The most GPUs one step can have: what the best-provided worker holds."""
        return max((len(devices) for devices in self.worker_gpus), default=0)

    def resources_of(self, worker: int) -> dict[str, float]:
        """The dask resources worker ``worker`` advertises."""
        resources = {"cpus": float(self.cpus_per_worker)}
        if self.gpus_of(worker):
            resources["gpus"] = float(len(self.gpus_of(worker)))
        return resources

    def env_of(self, worker: int) -> dict[str, str]:
        """The environment added to worker ``worker``'s: ``env`` and, for a worker with GPUs,
        ``CUDA_VISIBLE_DEVICES`` = its GPUs (its GPU pool, leased to its steps)."""
        env = dict(self.env)
        if self.gpus_of(worker):
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus_of(worker))
        return env

    def describe(self) -> str:
        """One line for the scheduler's log."""
        parts = [f"{self.workers} worker(s) of {self.cpus_per_worker} CPU(s)"]
        if self.memory_per_worker_mb is not None:
            parts.append(f"{self.memory_per_worker_mb} MB each")
        gpus = self.gpu_devices
        if gpus:
            kind = f" {self.gpu_type}" if self.gpu_type else ""
            shared = ", shared" if self.gpu_sharing else ""
            parts.append(f"{len(gpus)}{kind} GPU(s) [{','.join(gpus)}] ({self.gpu_source}{shared}), "
                         f"at most {self.max_step_gpus} per step")
        else:
            parts.append(f"no GPUs ({self.gpu_source})" if self.gpu_source else "no GPUs")
        if self.env:
            parts.append(f"env_setup sets {', '.join(sorted(self.env))}")
        return f"host {self.name}: " + "; ".join(parts)


def default_workers(cores: int, memory_mb: int | None) -> int:
    """One worker per core, fewer when the memory would leave one less than MIN_WORKER_MEMORY_MB."""
    if memory_mb is None:
        return cores
    return max(1, min(cores, memory_mb // MIN_WORKER_MEMORY_MB))


def plan_local_host(host: HostConfig, gpu_devices: Sequence[str], gpu_source: str = "", *,
                    workers: int | None = None) -> LocalHostSpec:
    """The LocalCluster ``host`` describes, with these GPUs (see the module docstring);
    ``workers`` (``orch daemon --workers``) overrides the host's.

    ``cores`` and ``memory`` count as declared only when a hosts file sets them: the built-in
    host's ``cores`` is this machine's count, a default rather than a limit.
    """
    declared = host.source is not None
    cores = host.cores if declared else None
    total_cores = cores or machine_cores()
    count = workers or host.workers or default_workers(total_cores, host.memory_mb)
    memory_per_worker = host.memory_mb // count if host.memory_mb is not None else None
    if memory_per_worker is not None and memory_per_worker < FLOOR_WORKER_MEMORY_MB:
        where = f" ({host.source})" if host.source else ""
        raise HostConfigError(f"host {host.name!r}{where}: memory = {host.memory_mb} MB over {count} worker(s) "
                              f"leaves {memory_per_worker} MB each; a worker needs at least "
                              f"{FLOOR_WORKER_MEMORY_MB} MB (give fewer workers or more memory)")
    return LocalHostSpec(
        workers=count, cpus_per_worker=max(1, total_cores // count), memory_per_worker_mb=memory_per_worker,
        worker_gpus=deal_gpus(gpu_devices, count, sharing=host.gpu_sharing), gpu_sharing=host.gpu_sharing,
        gpu_type=host.gpu_type, name=host.name, cores=cores, memory_mb=host.memory_mb, gpu_source=gpu_source)


def declared_gpus(host: HostConfig) -> int | None:
    """The GPU count the hosts file gives, or None when GPUs are to be detected."""
    return host.gpus if host.gpus_declared else None


def local_host_spec(host: HostConfig, *, workers: int | None = None, find_gpus: bool = True,
                    env: Mapping[str, str] | None = None) -> LocalHostSpec:
    """The spec of ``host`` on this machine, its GPUs found in ``env`` (default: this process's)
    or by ``nvidia-smi``. ``find_gpus=False`` skips ``nvidia-smi`` (it may take seconds) for a
    caller that needs no GPU count: undeclared GPUs then count as none. No ``env_setup`` here:
    the scheduler runs it when it starts the host (:mod:`orchestrator.scheduler.executors.local`)."""
    try:
        devices, source = host_gpu_devices(declared_gpus(host), env, detect_gpus if find_gpus else list)
    except GpuUnavailable as exc:
        where = f" ({host.source})" if host.source else ""
        raise HostConfigError(f"host {host.name!r}{where}: {exc}") from None
    return plan_local_host(host, devices, source, workers=workers)
