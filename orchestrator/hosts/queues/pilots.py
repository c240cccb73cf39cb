"""Pilot workers: dask workers that run inside batch jobs (dask-jobqueue), scaled to the work.

A pilot is one batch job of the host's ``[pilot]`` size (cores, memory, wall time, GPUs) on
its queue, running ``processes`` dask workers. Each worker advertises its share as dask
resources (``cpus``, ``gpus``), so the scheduler places a step only where what it declares
fits. ``adapt`` keeps between ``min_pilots`` and ``max_pilots`` (else the host's ``max_jobs``)
jobs. Workers retire a few minutes before the pilot's wall time (``--lifetime``), so the queue
never kills one in the middle of a step, and adaptivity starts a fresh pilot.

dask-jobqueue copies its ``jobqueue.yaml`` to ``~/.config/dask`` when first imported; we point
that copy at ``$ORCH_HOME/dask`` instead, so neither users nor tests find files appearing in
their home.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.hosts.config.model import HostConfig, HostKind
from orchestrator.hosts.config.units import format_hms, format_memory_mb
from orchestrator.hosts.errors import HostError
from orchestrator.hosts.queues import backend_for

_CLUSTER_CLASSES = {HostKind.SLURM: "SLURMCluster", HostKind.SGE: "SGECluster", HostKind.PBS: "PBSCluster"}
LIFETIME_MARGIN_S = 300
PRELOAD_MODULE = "orchestrator.worker.runtime"
# The pilot's worker processes are forked from the process that starts them, which has
# already imported dask and the step runner (the preload), instead of spawned fresh: with
# spawn, 8 workers each importing both took 6 s of an 8-core pilot's start on 2 real cores.
FORK_WORKERS = "export DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD=fork"


@dataclass(frozen=True)
class PilotSpec:
    """Everything needed to start a host's pilot cluster: pure data, testable without a queue."""

    cluster_class: str
    kwargs: dict[str, Any]
    minimum_jobs: int
    maximum_jobs: int
    worker_resources: dict[str, float] = field(default_factory=dict)


def worker_resources(cores: int, gpus: int, processes: int) -> dict[str, float]:
    """The dask resources one worker process of a pilot advertises."""
    resources = {"cpus": float(cores // processes)}
    if gpus:
        resources["gpus"] = float(gpus // processes)
    return resources


def pilot_spec(host: HostConfig, *, log_directory: str | None = None, python: str | None = None,
               interface: str | None = None) -> PilotSpec:
    """The dask-jobqueue cluster a host's ``[pilot]`` section describes."""
    if host.kind not in _CLUSTER_CLASSES:
        raise HostError(f"host {host.name!r} is of kind {host.kind.value!r}: pilots need a queue (slurm, sge, pbs)")
    if host.ssh is not None:
        raise HostError(f"host {host.name!r} is reached over SSH: dask-jobqueue pilots need the queue's commands "
                        "on this machine (run the scheduler on the cluster's login node)")
    pilot = host.pilot
    backend = backend_for(host)
    queue = host.queue(pilot.queue)
    if pilot.gpus and pilot.gpus % pilot.processes:
        raise HostError(f"host {host.name!r}: pilot gpus ({pilot.gpus}) must divide among its {pilot.processes} "
                        "worker processes")
    resources = worker_resources(pilot.cores, pilot.gpus, pilot.processes)
    worker_args = ["--resources", ",".join(f"{k}={v:g}" for k, v in resources.items())]
    # Import the step runner before the worker connects: otherwise the first step of every
    # worker spends seconds importing it with the worker's event loop blocked (measured 14-37 s
    # on a loaded 2-core node with 8 workers), and dask piles the work on whoever is ready.
    worker_args += ["--preload", PRELOAD_MODULE]
    if pilot.walltime_s > 2 * LIFETIME_MARGIN_S:
        worker_args += ["--lifetime", f"{pilot.walltime_s - LIFETIME_MARGIN_S}s", "--lifetime-stagger", "60s"]
    directives = list(host.extra_directives) + list(queue.extra_directives) + list(pilot.extra_directives)
    kwargs: dict[str, Any] = {
        "queue": queue.name,
        "cores": pilot.cores,
        "processes": pilot.processes,
        "memory": format_memory_mb(pilot.memory_mb),
        "walltime": format_hms(pilot.walltime_s),
        "job_script_prologue": [*host.env_setup, FORK_WORKERS],
        "worker_extra_args": worker_args,
        "job_name": f"orch-pilot-{host.name}",
        "python": python or pilot.python or sys.executable,
        # any free port: several projects' schedulers may run on one login node
        "scheduler_options": {"dashboard_address": ":0"},
    }
    if interface or pilot.interface:
        kwargs["interface"] = interface or pilot.interface
    if log_directory:
        kwargs["log_directory"] = log_directory
    if pilot.local_directory:
        kwargs["local_directory"] = pilot.local_directory
    if host.kind is HostKind.SLURM:
        if pilot.gpus:
            directives.append(backend.gpu_request(queue, pilot.gpus))
    elif host.kind is HostKind.SGE:
        if pilot.cores > 1:
            directives.append(f"-pe {queue.parallel_env} {pilot.cores}")
        if pilot.gpus:
            directives.append(backend.gpu_request(queue, pilot.gpus))
        # dask-jobqueue's SGE memory request is h_vmem per job; sites differ, the hosts file decides.
        request = backend.memory_request(queue, pilot.memory_mb, pilot.cores) if queue.memory_request else None
        kwargs["resource_spec"] = request.removeprefix("-l ").strip() if request else None
    else:  # PBS: one select chunk with everything, GPUs in the queue's syntax
        chunk = [f"select=1:ncpus={pilot.cores}", f"mem={pilot.memory_mb}mb"]
        if pilot.gpus:
            chunk.append(backend.gpu_request(queue, pilot.gpus))
        kwargs["resource_spec"] = ":".join(chunk)
    kwargs["job_extra_directives"] = directives
    maximum = pilot.max_pilots or host.max_jobs or max(pilot.min_pilots, 1)
    return PilotSpec(cluster_class=_CLUSTER_CLASSES[host.kind], kwargs=kwargs, minimum_jobs=pilot.min_pilots,
                     maximum_jobs=maximum, worker_resources=resources)


def _import_jobqueue() -> Any:
    """Import dask_jobqueue with its config copy sent to ``$ORCH_HOME/dask``, not ``~/.config/dask``."""
    if "dask_jobqueue" in sys.modules:
        return sys.modules["dask_jobqueue"]
    import dask.config

    from orchestrator.project import orch_home

    saved = dask.config.PATH
    dask.config.PATH = str(orch_home() / "dask")
    try:
        import dask_jobqueue
    finally:
        dask.config.PATH = saved
    return dask_jobqueue


def start_pilot_cluster(host: HostConfig, *, adapt: bool = True, log_directory: str | os.PathLike[str] | None = None,
                        python: str | None = None, interface: str | None = None,
                        extra_kwargs: Mapping[str, Any] | None = None) -> Any:
    """Start the host's pilot cluster (scheduler in this process); adaptive unless ``adapt=False``
    (then call ``cluster.scale(jobs=N)``). Close it with ``cluster.close()``, which cancels
    the pilots' jobs."""
    spec = pilot_spec(host, log_directory=str(log_directory) if log_directory else None, python=python,
                      interface=interface)
    if log_directory:
        Path(log_directory).mkdir(parents=True, exist_ok=True)
    jobqueue = _import_jobqueue()
    cluster_class = getattr(jobqueue, spec.cluster_class)
    cluster = cluster_class(**{**spec.kwargs, **(extra_kwargs or {})})
    if adapt:
        cluster.adapt(minimum_jobs=spec.minimum_jobs, maximum_jobs=spec.maximum_jobs)
    return cluster


def pilots_needed(pending_cpus: int, host: HostConfig) -> int:
    """How many pilots ``pending_cpus`` cores of queued steps would fill (bounded by the limits)."""
    pilot = host.pilot
    wanted = math.ceil(pending_cpus / pilot.cores) if pending_cpus else 0
    maximum = pilot.max_pilots or host.max_jobs or wanted
    return max(pilot.min_pilots, min(wanted, maximum))
