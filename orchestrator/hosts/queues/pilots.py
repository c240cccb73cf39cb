"""Pilot workers: dask workers that run inside batch jobs (dask-jobqueue), scaled to the work.

A pilot is one batch job of the host's ``[pilot]`` size (cores, memory, wall time, GPUs) on
its queue, running ``processes`` dask workers. Each worker advertises its share as dask
resources (``cpus``, ``gpus``), so the scheduler places a step only where what it declares
fits. ``adapt`` keeps between ``min_pilots`` and ``max_pilots`` (else the host's ``max_jobs``)
jobs. Workers retire a few minutes before the pilot's wall time (``--lifetime``), so the queue
never kills one in the middle of a step, and adaptivity starts a fresh pilot.

What differs between queue systems comes from the host's backend: the dask-jobqueue class
(``pilot_class``), the arguments that size a pilot in the queue's terms (``pilot_kwargs``) and
the lines that give the job's id and GPUs their generic names (``job_exports``, first in the
job script's prologue). dask-jobqueue writes its log directory into its directive lines as is,
unquoted: a log directory that is not plain text (a project path with a space, ``#`` or a
quote) is therefore not given to it; the prologue redirects the pilot's output there instead,
and the queue's own copy goes to ``/dev/null``.

Every pilot speaks TLS with the project's credentials (:mod:`orchestrator.security`): the
scheduler here gets the cluster side's ``Security`` (through ``scheduler_options``, and the
cluster's own client through dask's configuration while the cluster starts), each worker its
files on the shared file system as the compute node sees them (the host's ``path_map``), as
``--tls-*`` arguments written into the job script quoted for its shell. dask-jobqueue's own
``security=`` would write this machine's paths there, unquoted. The dashboards of the scheduler
and of the workers listen on 127.0.0.1 only.

dask-jobqueue copies its ``jobqueue.yaml`` to ``~/.config/dask`` when first imported; we point
that copy at ``$ORCH_HOME/dask`` instead, so neither users nor tests find files appearing in
their home.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.hosts import job_env
from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.config.units import format_hms, format_memory_mb
from orchestrator.hosts.errors import HostError
from orchestrator.hosts.queues import BACKENDS, backend_for
from orchestrator.hosts.queues.jobscript import NULL_OUTPUT, shquote
from orchestrator.security import LOOPBACK_HTTP, ProjectTLS

LIFETIME_MARGIN_S = 300
PRELOAD_MODULE = "orchestrator.worker.runtime"
# The pilot's worker processes are forked from the process that starts them, which has
# already imported dask and the step runner (the preload), instead of spawned fresh: with
# spawn, 8 workers each importing both took 6 s of an 8-core pilot's start on 2 real cores.
FORK_WORKERS = "export DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD=fork"
# what every queue's directive parser reads as it is (dask-jobqueue writes log paths unquoted)
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_./+=@-]+$")


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
               interface: str | None = None, tls: ProjectTLS | None = None,
               node_path: Callable[[str], str] | None = None) -> PilotSpec:
    """The dask-jobqueue cluster a host's ``[pilot]`` section describes; with ``tls``, one that
    speaks TLS with those credentials, which the compute nodes find at ``node_path(path here)``."""
    if host.kind not in BACKENDS:
        raise HostError(f"host {host.name!r} is of kind {host.kind!r}: pilots need a queue ({', '.join(BACKENDS)})")
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
    # dask's default is every interface of the node, for a dashboard and its metrics that anyone may read
    worker_args += ["--dashboard-address", LOOPBACK_HTTP]
    # any free port: several projects' schedulers may run on one login node
    scheduler_options: dict[str, Any] = {"dashboard_address": LOOPBACK_HTTP}
    if tls is not None:
        files = tls.worker_files(node_path)
        worker_args += ["--tls-ca-file", shquote(files.ca_file), "--tls-cert", shquote(files.cert),
                        "--tls-key", shquote(files.key)]
        scheduler_options.update(protocol="tls://", security=tls.cluster_security())
    directives = list(host.extra_directives) + list(queue.extra_directives) + list(pilot.extra_directives)
    job_name = f"orch-pilot-{host.name}"
    prologue = backend.job_exports()
    if log_directory and not _PLAIN_PATH.match(log_directory):
        null_output = backend.output_directive(NULL_OUTPUT)
        if null_output is None:
            raise HostError(f"host {host.name!r}: cannot send a pilot's output to {NULL_OUTPUT}")
        directives.append(null_output)
        log_file = f"{log_directory.rstrip('/')}/{job_name}-"
        prologue.append(f'exec >>{shquote(log_file)}"${job_env.JOB_ID}.log" 2>&1')
        log_directory = None
    kwargs: dict[str, Any] = {
        "queue": queue.name,
        "cores": pilot.cores,
        "processes": pilot.processes,
        "memory": format_memory_mb(pilot.memory_mb),
        "walltime": format_hms(pilot.walltime_s),
        "job_script_prologue": [*prologue, *host.env_setup, FORK_WORKERS],
        "worker_extra_args": worker_args,
        "job_name": job_name,
        "python": python or pilot.python or sys.executable,
        "scheduler_options": scheduler_options,
    }
    if tls is not None:
        kwargs["protocol"] = "tls://"
    if interface or pilot.interface:
        kwargs["interface"] = interface or pilot.interface
    if log_directory:
        kwargs["log_directory"] = log_directory
    if pilot.local_directory:
        kwargs["local_directory"] = pilot.local_directory
    own = backend.pilot_kwargs(pilot, queue)
    kwargs.update({key: value for key, value in own.items() if key != "job_extra_directives"})
    kwargs["job_extra_directives"] = directives + list(own.get("job_extra_directives", []))
    maximum = pilot.max_pilots or host.max_jobs or max(pilot.min_pilots, 1)
    return PilotSpec(cluster_class=backend.pilot_class, kwargs=kwargs, minimum_jobs=pilot.min_pilots,
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
                        extra_kwargs: Mapping[str, Any] | None = None, tls: ProjectTLS | None = None,
                        node_path: Callable[[str], str] | None = None) -> Any:
    """Start the host's pilot cluster (scheduler in this process); adaptive unless ``adapt=False``
    (then call ``cluster.scale(jobs=N)``). Close it with ``cluster.close()``, which cancels
    the pilots' jobs. The scheduler executors start always pass ``tls`` (the project's
    credentials) and ``node_path`` (the host's ``path_map``); without ``tls`` the cluster is
    plain TCP, open to anyone who reaches its port (tests of dask-jobqueue itself only)."""
    spec = pilot_spec(host, log_directory=str(log_directory) if log_directory else None, python=python,
                      interface=interface, tls=tls, node_path=node_path)
    if log_directory:
        Path(log_directory).mkdir(parents=True, exist_ok=True)
    jobqueue = _import_jobqueue()
    cluster_class = getattr(jobqueue, spec.cluster_class)
    with _cluster_client_config(tls):
        cluster = cluster_class(**{**spec.kwargs, **(extra_kwargs or {})})
    if adapt:
        cluster.adapt(minimum_jobs=spec.minimum_jobs, maximum_jobs=spec.maximum_jobs)
    return cluster


@contextmanager
def _cluster_client_config(tls: ProjectTLS | None) -> Iterator[None]:
    """dask-jobqueue hands its cluster object (whose client talks to the scheduler: scaling,
    ``Client(cluster)``) the same ``security`` it writes into the job script; we keep that
    ``None`` and give the cluster its client's credentials through dask's configuration,
    which the cluster reads once, when it starts."""
    if tls is None:
        yield
        return
    import dask.config

    with dask.config.set({"distributed.comm.require-encryption": True,
                          "distributed.comm.tls.ca-file": str(tls.ca_file),
                          "distributed.comm.tls.client.cert": str(tls.cert_file("client")),
                          "distributed.comm.tls.client.key": str(tls.key_file("client"))}):
        yield


def pilots_needed(pending_cpus: int, host: HostConfig) -> int:
    """How many pilots ``pending_cpus`` cores of queued steps would fill (bounded by the limits)."""
    pilot = host.pilot
    wanted = math.ceil(pending_cpus / pilot.cores) if pending_cpus else 0
    maximum = pilot.max_pilots or host.max_jobs or wanted
    return max(pilot.min_pilots, min(wanted, maximum))
