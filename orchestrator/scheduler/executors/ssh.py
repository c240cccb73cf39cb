"""Steps on an SSH host: dask workers started there over SSH, data staged around each step.

The executor keeps a small dask cluster in this process: its scheduler (on loopback, reached
by the remote workers through an SSH remote forward, see :mod:`orchestrator.hosts.ssh.workers`)
and one thread worker here that does the staging. The remote workers advertise ``cpus`` (and
``gpus``); the steps are restricted to them. Steps here never open the project store: each
returns its outcome (see :mod:`orchestrator.worker.outcome`), which the scheduler records, and
announces its start through a dask event, collected here for the scheduler.

On a host that shares the project's file system (``shared_fs = true``, with ``path_map``),
a step runs on the host with its paths mapped. Otherwise a step becomes a task here
(:func:`run_ssh_step`) that

1. stages the inputs (and the run's exported input sets) to the host's copy of the project
   (a file already there with the same fingerprint is not sent again);
2. runs :func:`~orchestrator.worker.remote.run_mapped_step` on the host as a task of its own:
   the step runs in the host's copy and returns its outcome, never raising for the step's own
   failure;
3. brings the step's log back (always), its outputs and registered sets too when it
   succeeded, and hands the outcome to the scheduler.

A failure of staging or of the SSH connection fails the chain with that error; the scheduler
records it and retries the step like a lost worker.

The workers are watched (:mod:`.ssh_watch`, on every scheduler loop through :meth:`SSHExecutor.tick`):
lost ones are dropped, so their steps fail and are retried at once, and started again; a
host whose workers cannot be started again within ``[hosts.X.liveness] unreachable_after`` is
reported unreachable, and the steps waiting for it fail with that reason.
"""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
from distributed import Client, Future, LocalCluster, worker_client

from orchestrator.hosts import fit
from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.ssh.workers import SSHWorkerGroup, remote_python, start_ssh_workers
from orchestrator.protocol import Step, StepGraph
from orchestrator.scheduler import staging
from orchestrator.scheduler.executors import live
from orchestrator.scheduler.executors.base import HostExecutor, HostUnusable, drain_announcements, host_path_map
from orchestrator.scheduler.executors.ssh_watch import SSHWorkerWatch
from orchestrator.scheduler.executors.watch import HealthReport
from orchestrator.security import LOOPBACK_HTTP, project_tls
from orchestrator.store import ProjectStore, StepRecord
from orchestrator.worker.outcome import StepOutcome
from orchestrator.worker.processes import end_step_children, step_token
from orchestrator.worker.remote import PathMap, run_mapped_step
from orchestrator.worker.runtime import RUNNING_TOPIC, StepPayload

log = logging.getLogger(__name__)

LOCAL_THREADS = 8
WORKER_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class RemotePlacement:
    """Where and how the remote half of a step runs (plain data, sent with the chain task)."""

    key: str
    resources: dict[str, float]
    gpus: int
    worker_gpus: int
    sharing: bool


def run_ssh_step(staging_key: str, payload: StepPayload, step: Step, path_map: PathMap,
                 placement: RemotePlacement) -> StepOutcome:
    """Here, on the executor's thread worker: stage in, run the step on the host, stage out.

    The remote half is submitted from inside this task (dask's tasks-launching-tasks, the
    thread seceding while it waits) rather than as a dependent task: a task on the host may
    not depend on data held here, since the host cannot connect back to this machine. The
    outcome comes back to the scheduler, which records it.
    """
    # while the host's workers are being started again, wait before sending anything (a step
    # retried after a loss would otherwise fail its staging or wait with its files half sent)
    live.lookup("ssh host", payload.host, SSHWorkerWatch).wait_usable()
    exported = sorted(Path(payload.sets_dir).glob("*.npz")) if payload.sets_dir else []
    staging.stage_in_task(staging_key, payload.run_id, step, Path(payload.run_dir), step_id=payload.step_id,
                          extra=exported)
    with worker_client() as client:
        remote = client.submit(run_mapped_step, payload, path_map, placement.gpus, placement.worker_gpus,
                               placement.sharing, key=placement.key, resources=placement.resources, pure=False)
        outcome: StepOutcome = remote.result()
    return finish_remote_step(staging_key, payload, step, outcome)


def finish_remote_step(staging_key: str, payload: StepPayload, step: Step, outcome: StepOutcome) -> StepOutcome:
    """Here, after the step: bring its log, outputs and registered sets back; the outcome, with
    a note of where the whole log now is."""
    staged = staging.stage_out_task(staging_key, payload.run_id, step, Path(payload.run_dir), outcome,
                                    step_id=payload.step_id)
    outcome.log_note = f" (the log could not be fetched: {staged.log_error})" if staged.log_error else \
        f"; the whole log is in {staged.log_path}"
    return outcome


class SSHExecutor(HostExecutor):
    """Remote dask workers over SSH, with staging where the host has its own disk."""

    def __init__(self, host: HostConfig, project_dir: Path, store: ProjectStore) -> None:
        if host.ssh is None:
            raise HostUnusable(f"host {host.name!r} has no ssh section")
        self.name = host.name
        self.host = host
        self.store = store
        self.reports = True
        self.programs = {name: list(argv) for name, argv in getattr(host, "programs", {}).items()}
        self.project_dir = Path(os.path.abspath(project_dir))
        share = fit.ssh_worker_share(host)
        self.n_workers, self.worker_cpus, self.worker_gpus = share.workers, share.cpus, share.gpus
        self._running: queue.Queue[dict[str, Any]] = queue.Queue()
        self.staging: staging.HostStaging | None = None
        self.staging_key = ""
        # TLS end to end with the remote workers (the SSH forwards only carry it); HTTP on loopback
        tls = project_tls(self.project_dir)
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # our retries only
            self.cluster = LocalCluster(n_workers=1, threads_per_worker=LOCAL_THREADS, processes=False,
                                        protocol="tls", host="127.0.0.1", scheduler_port=0,
                                        security=tls.cluster_security(), dashboard_address=LOOPBACK_HTTP,
                                        worker_dashboard_address=LOOPBACK_HTTP, memory_limit=0,
                                        silence_logs=logging.CRITICAL)
        self.client = Client(self.cluster, set_as_default=False)
        self.local_worker = next(iter(self.client.scheduler_info()["workers"]))
        self.watch: SSHWorkerWatch | None = None
        self.health = HealthReport(store, host.name)
        try:
            if not host.shared_fs:
                self.staging = staging.HostStaging(host, store, self.project_dir, python=remote_python(host))
                self.staging_key = staging.register(self.staging)
            resources = {"cpus": float(self.worker_cpus)}
            if self.worker_gpus:
                resources["gpus"] = float(self.worker_gpus)

            def start_workers(name_prefix: str) -> SSHWorkerGroup:
                group = start_ssh_workers(host, self.cluster.scheduler_address, workers=self.n_workers,
                                          resources=resources, tls=tls.worker_pem(), name_prefix=name_prefix)
                try:
                    group.wait_for_workers(self.client, timeout=WORKER_START_TIMEOUT_S)
                except BaseException:
                    group.close(timeout=5.0)
                    raise
                return group

            # started now, then watched and started again after a loss (see ssh_watch)
            self.watch = SSHWorkerWatch(host, self.client, start_workers)
            live.register("ssh host", host.name, self.watch)
            self.client.subscribe_topic(RUNNING_TOPIC, self._on_running)
        except BaseException:
            self.close()
            raise

    @property
    def workers(self) -> SSHWorkerGroup | None:
        """The host's dask workers now (a new group after each restart; None once closed)."""
        return self.watch.group if self.watch is not None else None

    def tick(self) -> None:
        """Watch the workers (lost ones are dropped and started again; see :mod:`.ssh_watch`)."""
        if self.watch is not None:
            self.watch.look(self.health)

    # ------------------------------------------------------------------ placement
    def check(self, graph: StepGraph) -> None:
        """The same check as at submit (:func:`orchestrator.hosts.fit.check_ssh_steps`)."""
        try:
            fit.check_ssh_steps(self.host, graph)
        except fit.DoesNotFitHost as exc:
            raise HostUnusable(str(exc)) from None

    def _restrictions(self, step: Step) -> dict[str, float]:
        restrictions = {"cpus": float(max(1, step.resources.cpus))}
        if step.resources.gpus:
            restrictions["gpus"] = float(step.resources.gpus)
        return restrictions

    def submit(self, payload: StepPayload, step: Step, key: str) -> Future:
        gpus = step.resources.gpus
        if self.staging is None:
            return self.client.submit(run_mapped_step, payload, host_path_map(self.host, self.project_dir), gpus,
                                      self.worker_gpus, self.host.gpu_sharing, key=key,
                                      resources=self._restrictions(step), pure=False)
        placement = RemotePlacement(f"{key}-run", self._restrictions(step), gpus, self.worker_gpus,
                                    self.host.gpu_sharing)
        path_map = self.staging.path_map_for(step, Path(payload.run_dir))
        return self.client.submit(run_ssh_step, self.staging_key, payload, step, path_map, placement,
                                  key=key, workers=[self.local_worker], allow_other_workers=False, pure=False)

    # ------------------------------------------------------------------ RUNNING from the host
    def _on_running(self, event: tuple[float, dict[str, Any]]) -> None:
        """dask calls this on its event loop: only queue the record; the scheduler writes it."""
        self._running.put(event[1])

    def started(self) -> list[tuple[int, int, dict[str, Any]]]:
        return drain_announcements(self._running)

    # ------------------------------------------------------------------ cancel and close
    def cancel(self, futures: list[Future], steps: Iterable[StepRecord], store_url: str) -> None:
        keys = {str(f.key) for f in futures}
        related: list[Future] = [Future(f"{k}-run", self.client) for k in keys]
        self.client.cancel([*futures, *related])
        for step in steps:
            if step.pid and step.worker:
                try:  # on the host's worker: what the step started (the worker process itself stays)
                    self.client.run(end_step_children, step_token(store_url, step.id, step.attempt), step.pid,
                                    step.proc_start, workers=[step.worker])
                except (OSError, ValueError, KeyError) as exc:
                    log.info("step %s: its worker %s is gone (%s)", step.name, step.worker, exc)

    def close(self) -> None:
        if self.watch is not None:
            live.unregister("ssh host", self.name)
            self.watch.close()
        if self.staging is not None:
            staging.unregister(self.staging_key)
            self.staging.close()
        self.client.close()
        self.cluster.close()

