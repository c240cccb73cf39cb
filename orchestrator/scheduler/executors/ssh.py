"""Steps on an SSH host: dask workers started there over SSH, data staged around each step.

The executor keeps a small dask cluster in this process: its scheduler (on loopback, reached
by the remote workers through an SSH remote forward, see :mod:`orchestrator.hosts.ssh.workers`)
and one thread worker here that does the staging and the store writes. The remote workers
advertise ``cpus`` (and ``gpus``); the steps are restricted to them.

On a host that shares the project's file system (``shared_fs = true``, with ``path_map``),
a step is the usual :func:`run_step_task`, with its paths mapped. Otherwise a step becomes
a task here (:func:`run_ssh_step`) that

1. stages the inputs to the host's copy of the project (a file already there with the same
   fingerprint is not sent again);
2. runs :func:`run_staged_step` on the host as a task of its own: the step runs in the host's
   copy and returns a :class:`RemoteOutcome`, never raising for the step's own failure; it
   announces that it runs through a dask event, which this executor records as RUNNING;
3. brings the step's log back (always), its outputs too when it succeeded, and records the
   outcome in the store (FINISHED, or FAILED with the remote log's last lines).

A failure of staging or of the SSH connection fails the chain with that error; the scheduler
records it and retries the step like a lost worker.
"""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distributed import Client, Future, LocalCluster, worker_client

from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.ssh.workers import SSHWorkerGroup, remote_python, start_ssh_workers
from orchestrator.protocol import Step, StepGraph
from orchestrator.scheduler import staging
from orchestrator.scheduler.executors import live
from orchestrator.scheduler.executors.base import HostExecutor, HostUnusable
from orchestrator.store import ProjectStore, StepRecord, StepState
from orchestrator.worker.batch_job import host_payload
from orchestrator.worker.gpus import gpus_leased, run_gpu_step_task
from orchestrator.worker.remote import RUNNING_TOPIC, PathMap, RemoteOutcome, run_remote_step
from orchestrator.worker.runtime import StepFailed, StepPayload, run_step_task

log = logging.getLogger("orchestrator.scheduler")

LOCAL_THREADS = 8
WORKER_START_TIMEOUT_S = 120.0


def run_staged_step(payload: StepPayload, path_map: PathMap, gpus: int = 0, worker_gpus: int = 0,
                    sharing: bool = False) -> RemoteOutcome:
    """On the host, once the inputs are there; a step that needs GPUs leases them from its
    worker's pool first (see :mod:`orchestrator.worker.gpus`)."""
    if not gpus:
        return run_remote_step(payload, path_map)
    with gpus_leased(payload, gpus, worker_gpus, sharing) as leased:
        return run_remote_step(leased, path_map)


@dataclass(frozen=True)
class RemotePlacement:
    """Where and how the remote half of a step runs (plain data, sent with the chain task)."""

    key: str
    resources: dict[str, float]
    gpus: int
    worker_gpus: int
    sharing: bool


def run_ssh_step(staging_key: str, store_url: str, payload: StepPayload, step: Step, path_map: PathMap,
                 placement: RemotePlacement) -> dict[str, Any] | None:
    """Here, on the executor's thread worker: stage in, run the step on the host, stage out, record.

    The remote half is submitted from inside this task (dask's tasks-launching-tasks, the
    thread seceding while it waits) rather than as a dependent task: a task on the host may
    not depend on data held here, since the host cannot connect back to this machine.
    """
    staging.stage_in_task(staging_key, payload.run_id, step, Path(payload.run_dir), step_id=payload.step_id)
    with worker_client() as client:
        remote = client.submit(run_staged_step, payload, path_map, placement.gpus, placement.worker_gpus,
                               placement.sharing, key=placement.key, resources=placement.resources, pure=False)
        outcome: RemoteOutcome = remote.result()
    return finish_remote_step(staging_key, store_url, payload, step, payload.run_dir, outcome)


def finish_remote_step(staging_key: str, store_url: str, payload: StepPayload, step: Step, local_run_dir: str,
                       outcome: RemoteOutcome) -> dict[str, Any] | None:
    """Here, after the step: bring its log and outputs back, record how it ended."""
    store = live.lookup("store", store_url, ProjectStore)
    staged = staging.stage_out_task(staging_key, payload.run_id, step, Path(local_run_dir), outcome,
                                    step_id=payload.step_id)
    common: dict[str, Any] = {
        "worker": outcome.worker, "pid": outcome.pid, "host": payload.host, "started_at": outcome.started_at,
        "finished_at": datetime.now(UTC), "duration_s": outcome.duration_s,
        "peak_memory_mb": outcome.peak_memory_mb, "attempt": payload.attempt}
    # The host's RUNNING announcement may not have been written yet (the executor writes it on
    # its next tick): write it now from the outcome, so the history reads queued, running, end.
    store.steps.transition(payload.step_id, StepState.RUNNING, expected=(StepState.QUEUED,), worker=outcome.worker,
                           pid=outcome.pid, host=payload.host, gpus=list(payload.gpus),
                           started_at=outcome.started_at, attempt=payload.attempt)
    expected = (StepState.RUNNING,)
    if outcome.ok:
        store.steps.transition(payload.step_id, StepState.FINISHED, expected=expected, result=outcome.result,
                               error=None, **common)
        return outcome.result
    where = f"{outcome.remote_log_path} on host {payload.host}"
    note = f" (the log could not be fetched: {staged.log_error})" if staged.log_error else \
        f"; the whole log is in {staged.log_path}"
    store.steps.transition(payload.step_id, StepState.FAILED, message=outcome.error, expected=expected,
                           error=f"{outcome.error}\n--- last lines of {where}{note} ---\n{outcome.log_tail}",
                           **common)
    raise StepFailed(outcome.error or "failed")


class SSHExecutor(HostExecutor):
    """Remote dask workers over SSH, with staging where the host has its own disk."""

    def __init__(self, host: HostConfig, project_dir: Path, store: ProjectStore) -> None:
        if host.ssh is None:
            raise HostUnusable(f"host {host.name!r} has no ssh section")
        self.name = host.name
        self.host = host
        self.store = store
        self.project_dir = Path(os.path.abspath(project_dir))
        self.n_workers = max(1, host.workers or min(host.cores or 1, 4))
        self.worker_cpus = max(1, (host.cores or self.n_workers) // self.n_workers)
        self.worker_gpus = host.gpus // self.n_workers
        self._running: queue.Queue[dict[str, Any]] = queue.Queue()
        self.staging: staging.HostStaging | None = None
        self.staging_key = ""
        self.cluster = LocalCluster(n_workers=1, threads_per_worker=LOCAL_THREADS, processes=False, protocol="tcp",
                                    host="127.0.0.1", scheduler_port=0, dashboard_address=None, memory_limit=0,
                                    silence_logs=logging.CRITICAL)
        self.client = Client(self.cluster, set_as_default=False)
        self.local_worker = next(iter(self.client.scheduler_info()["workers"]))
        self.workers: SSHWorkerGroup | None = None
        try:
            if not host.shared_fs:
                self.staging = staging.HostStaging(host, store, self.project_dir, python=remote_python(host))
                self.staging_key = staging.register(self.staging)
                live.register("store", store.url, store)
            resources = {"cpus": float(self.worker_cpus)}
            if self.worker_gpus:
                resources["gpus"] = float(self.worker_gpus)
            self.workers = start_ssh_workers(host, self.cluster.scheduler_address, workers=self.n_workers,
                                             resources=resources)
            self.workers.wait_for_workers(self.client, timeout=WORKER_START_TIMEOUT_S)
            self.client.subscribe_topic(RUNNING_TOPIC, self._on_running)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ placement
    def check(self, graph: StepGraph) -> None:
        for step in graph:
            r = step.resources
            if r.cpus > self.worker_cpus or r.gpus > self.worker_gpus or r.mpi_ranks > 1:
                raise HostUnusable(f"step '{step.name}' asks for {r.cpus} CPU(s), {r.gpus} GPU(s), {r.mpi_ranks} "
                                   f"rank(s); each of the {self.n_workers} worker(s) of SSH host {self.name} holds "
                                   f"{self.worker_cpus} CPU(s) and {self.worker_gpus} GPU(s) (hosts file keys "
                                   "cores, gpus, workers)")

    def _restrictions(self, step: Step) -> dict[str, float]:
        restrictions = {"cpus": float(max(1, step.resources.cpus))}
        if step.resources.gpus:
            restrictions["gpus"] = float(step.resources.gpus)
        return restrictions

    def submit(self, payload: StepPayload, step: Step, key: str) -> Future:
        gpus = step.resources.gpus
        if self.staging is None:
            if gpus:
                return self.client.submit(run_gpu_step_task, self._shared_payload(payload), gpus, self.worker_gpus,
                                          self.host.gpu_sharing, key=key, resources=self._restrictions(step),
                                          pure=False)
            return self.client.submit(run_step_task, self._shared_payload(payload), key=key,
                                      resources=self._restrictions(step), pure=False)
        placement = RemotePlacement(f"{key}-run", self._restrictions(step), gpus, self.worker_gpus,
                                    self.host.gpu_sharing)
        path_map = self.staging.path_map_for(step, Path(payload.run_dir))
        return self.client.submit(run_ssh_step, self.staging_key, self.store.url, payload, step, path_map, placement,
                                  key=key, workers=[self.local_worker], allow_other_workers=False, pure=False)

    def _shared_payload(self, payload: StepPayload) -> StepPayload:
        return host_payload(payload, self.host.map_path)

    # ------------------------------------------------------------------ RUNNING from the host
    def _on_running(self, event: tuple[float, dict[str, Any]]) -> None:
        """dask calls this on its event loop: only queue the record; ``tick`` writes it."""
        self._running.put(event[1])

    def tick(self) -> None:
        while True:
            try:
                msg = self._running.get_nowait()
            except queue.Empty:
                return
            self.store.steps.transition(
                int(msg["step_id"]), StepState.RUNNING, expected=(StepState.QUEUED,), worker=msg["worker"],
                pid=msg["pid"], host=msg["host"], gpus=msg["gpus"], attempt=msg["attempt"],
                started_at=datetime.fromisoformat(msg["started_at"]))

    # ------------------------------------------------------------------ cancel and close
    def cancel(self, futures: list[Future], steps: Iterable[StepRecord]) -> None:
        keys = {str(f.key) for f in futures}
        related: list[Future] = [Future(f"{k}-run", self.client) for k in keys]
        self.client.cancel([*futures, *related])
        for step in steps:
            if step.pid and step.worker:
                try:
                    self.client.run(_kill_step, step.pid, workers=[step.worker])
                except (OSError, ValueError, KeyError) as exc:
                    log.info("step %s: its worker %s is gone (%s)", step.name, step.worker, exc)

    def close(self) -> None:
        if self.workers is not None:
            self.workers.close()
        if self.staging is not None:
            staging.unregister(self.staging_key)
            self.staging.close()
        live.unregister("store", self.store.url)
        self.client.close()
        self.cluster.close()


def _kill_step(pid: int) -> list[int]:
    """On the host's worker: kill what the step started (the worker process itself stays)."""
    import psutil

    from orchestrator.worker.processes import kill_tree

    killed: list[int] = []
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return killed
    for child in children:
        killed += kill_tree(child.pid)
    return killed
