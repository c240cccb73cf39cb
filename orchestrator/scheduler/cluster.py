"""The dask cluster of the embedded default host: a LocalCluster of one-thread worker processes.

One thread per worker process so that a step owns its process: its output redirection,
its ``CUDA_VISIBLE_DEVICES`` and, on cancel, its process tree. Each worker advertises
``cpus`` (and ``gpus`` when configured) as dask resources, and steps are submitted with
their declared needs, so dask never places more work on a worker than it holds.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import dask
from distributed import Client, LocalCluster


@dataclass(frozen=True)
class LocalHostSpec:
    workers: int = max(1, os.cpu_count() or 1)
    cpus_per_worker: int = 1
    gpus_per_worker: int = 0
    memory_limit: str | None = None


def worker_resources(spec: LocalHostSpec) -> dict[str, float]:
    resources: dict[str, float] = {"cpus": float(spec.cpus_per_worker)}
    if spec.gpus_per_worker:
        resources["gpus"] = float(spec.gpus_per_worker)
    return resources


def start_local_cluster(spec: LocalHostSpec) -> tuple[LocalCluster, Client]:
    """Start the cluster and a client; a dead worker fails its task at once (we retry it)."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.worker.daemon": False,
                          "distributed.admin.tick.limit": "10s"}):
        cluster = LocalCluster(n_workers=spec.workers, threads_per_worker=1, processes=True,
                               resources=worker_resources(spec), dashboard_address=":0",
                               memory_limit=spec.memory_limit or 0, silence_logs=logging.CRITICAL)
        client = Client(cluster, set_as_default=False)
    return cluster, client
