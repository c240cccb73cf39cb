"""Steps on a queue host (any registered queue system): small ones in pilot workers, big ones as their own jobs.

- **Pilots** (dask-jobqueue): a step that fits one pilot worker's share (cores, GPUs, memory,
  one MPI rank) is submitted to the pilot cluster with its needs as dask resources, so dask
  places it only on a worker that holds them. The executor scales the pilots to the work
  itself, from the cores of the pilot steps in flight, bounded by the host's limits
  (``pilots_needed``); it scales down only once no pilot step has been in flight for
  ``linger_s``, because dask-jobqueue cannot choose *which* pilot to stop and might stop a
  busy one. A pilot the queue killed is noticed by dask, and the next scale call replaces it.
- **Batch jobs**: every other step goes to :func:`run_batch_step` on a thread worker inside
  this process (a small dask cluster of its own), which submits the job with exactly the step's
  resources and waits for the host's poller to settle it.
- **Nothing stuck** (:mod:`.queue_watch`, from :meth:`QueueExecutor.tick`): a host whose queue
  commands keep failing is reported unreachable after its grace period; a pilot whose worker
  never connects is cancelled and reported, and after several in a row the pilot steps fail
  with the reason; a batch job gone from the queue and its accounting is settled as lost after
  ``[hosts.X.liveness] lost_job_after``.
- **Cancel**: batch jobs are cancelled through the queue (``scancel``/``qdel``); a step
  running in a pilot has its processes (found by its token, and its worker by pid and start
  time) ended through the worker's nanny, which then starts a fresh worker in the same pilot.

Steps here never open the project store: they report their outcome (see
:mod:`orchestrator.worker.outcome`), which the scheduler records; pilot steps announce their
start through a dask event, collected here for the scheduler (:meth:`started`).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dask
from distributed import Client, Future, LocalCluster

from orchestrator.hosts import fit
from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.queues.jobs import BatchQueue
from orchestrator.hosts.queues.pilots import pilots_needed, start_pilot_cluster, worker_resources
from orchestrator.hosts.queues.poller import PollSettings
from orchestrator.protocol import Step, StepGraph
from orchestrator.scheduler.executors.base import HostExecutor, HostUnusable, drain_announcements, host_path_map
from orchestrator.scheduler.executors.batch import register_batch_host, run_batch_step, unregister_batch_host
from orchestrator.scheduler.executors.queue_watch import PilotWatch, QueueHostWatch
from orchestrator.scheduler.executors.watch import HealthReport
from orchestrator.security import LOOPBACK_HTTP, project_tls
from orchestrator.store import ProjectStore, StepRecord
from orchestrator.worker.processes import end_step_processes, step_token
from orchestrator.worker.remote import run_mapped_step
from orchestrator.worker.runtime import RUNNING_TOPIC, StepPayload

log = logging.getLogger(__name__)

#: batch jobs one host may have waited on at once (threads of the waiter worker)
WAITER_THREADS = 64


class QueueExecutor(HostExecutor):
    """Pilot workers and direct batch jobs on one queue host (see the module docstring)."""

    def __init__(self, host: HostConfig, project_dir: Path, store: ProjectStore, *, linger_s: float = 60.0,
                 scale_interval_s: float = 2.0) -> None:
        self.name = host.name
        self.host = host
        self.store = store
        self.reports = True
        #: how the compute nodes see this machine's paths (pilot steps run with their paths mapped)
        self.path_map = host_path_map(host, project_dir)
        self.programs = {name: list(argv) for name, argv in getattr(host, "programs", {}).items()}
        self._running: queue.Queue[dict[str, Any]] = queue.Queue()
        self.linger_s = linger_s
        self.scale_interval_s = scale_interval_s
        pilot = host.pilot
        self.share = worker_resources(pilot.cores, pilot.gpus, pilot.processes)
        self.batch = BatchQueue(host, settings=PollSettings(lost_after_s=host.liveness.lost_job_after_s)).start()
        python = pilot.python or sys.executable
        register_batch_host(self.batch, store, python)
        self._lock = threading.Lock()
        self._pilot_cpus: dict[str, int] = {}
        self._last_busy = time.monotonic()
        self._last_scale = 0.0
        self._scaled_to = 0
        # Reached through its login node: pilots would need the queue's commands and a dask
        # scheduler on the login node, so every step runs as a batch job submitted over SSH.
        # The same when the hosts file turns pilots off.
        self.pilots = fit.pilots_enabled(host)
        self.cluster: Any = None
        self.client: Any = None
        try:
            if self.pilots:
                with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                    self.cluster = start_pilot_cluster(host, adapt=False,
                                                       log_directory=project_dir / "pilots" / host.name,
                                                       tls=project_tls(project_dir), node_path=self.path_map.to_remote)
                self.client = Client(self.cluster, set_as_default=False)
                self.client.subscribe_topic(RUNNING_TOPIC, self._on_running)
            self.waiter = self._start_waiter()
        except BaseException:
            self.batch.close()
            unregister_batch_host(host.name)
            raise
        # nothing stuck: queue commands, pilots that never connect, stranded pilot steps (queue_watch)
        pilot_watch = PilotWatch(host, self.cluster, self.client, self.batch.poller, project_dir / "pilots" / host.name,
                                 python) if self.pilots else None
        self.watch = QueueHostWatch(host, self.batch.poller, HealthReport(store, host.name), pilots=pilot_watch)
        if pilot.min_pilots and self.pilots:
            self._scale(pilot.min_pilots)

    def _start_waiter(self) -> Client:
        """A dask cluster of threads in this process for the tasks that wait on batch jobs.

        Separate from the pilot cluster on purpose: a worker there would also take the
        unrestricted pilot steps. It talks ``inproc://`` (no socket: no TLS to speak); only its
        HTTP endpoints listen, and on loopback (dask's default would be every interface).
        """
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = LocalCluster(n_workers=1, threads_per_worker=WAITER_THREADS, processes=False,
                                   protocol="inproc://", dashboard_address=LOOPBACK_HTTP,
                                   worker_dashboard_address=LOOPBACK_HTTP, memory_limit=0,
                                   silence_logs=logging.CRITICAL)
        return Client(cluster, set_as_default=False)

    # ------------------------------------------------------------------ placement
    def fits_pilot(self, step: Step) -> bool:
        return fit.fits_pilot(self.host, step)

    def check(self, graph: StepGraph) -> None:
        """The same check as at submit (:func:`orchestrator.hosts.fit.check_queue_steps`)."""
        try:
            fit.check_queue_steps(self.host, graph)
        except fit.DoesNotFitHost as exc:
            raise HostUnusable(str(exc)) from None

    def submit(self, payload: StepPayload, step: Step, key: str) -> Future:
        r = step.resources
        if not self.fits_pilot(step):
            return self.waiter.submit(run_batch_step, self.name, payload, r.to_dict(), key=key, pure=False)
        resources: dict[str, float] = {"cpus": max(1, r.cpus)}
        if r.gpus:
            resources["gpus"] = r.gpus
            future = self.client.submit(run_mapped_step, payload, self.path_map, r.gpus,
                                        int(self.share.get("gpus", 0)), key=key, resources=resources, pure=False)
        elif self.share["cpus"] == 1:
            # One-thread workers run one step at a time anyway. Unrestricted, the steps wait in
            # dask's scheduler queue and go to workers as they free up (and as pilots join);
            # restricted, dask would hand them all at once to the first worker that connected.
            future = self.client.submit(run_mapped_step, payload, self.path_map, key=key, pure=False, resources=None)
        else:
            future = self.client.submit(run_mapped_step, payload, self.path_map, key=key, resources=resources,
                                        pure=False)
        with self._lock:
            self._pilot_cpus[key] = max(1, r.cpus)
        future.add_done_callback(self._pilot_step_done)
        self._scale_to_work(force=True)
        return future

    def _pilot_step_done(self, future: Future) -> None:
        with self._lock:
            self._pilot_cpus.pop(str(future.key), None)

    # ------------------------------------------------------------------ scaling
    def tick(self) -> None:
        self.watch.look()
        if self.pilots:
            self._scale_to_work(force=False)

    def _scale_to_work(self, force: bool) -> None:
        now = time.monotonic()
        with self._lock:
            pending = sum(self._pilot_cpus.values())
        if pending:
            self._last_busy = now
            if force and self._scaled_to >= pilots_needed(pending, self.host):
                return
            if force or now - self._last_scale >= self.scale_interval_s:
                # Also re-done periodically: it makes dask-jobqueue replace pilots the queue killed.
                self._scale(max(self._scaled_to, pilots_needed(pending, self.host)))
        elif self._scaled_to > self.host.pilot.min_pilots and now - self._last_busy >= self.linger_s:
            self._scale(self.host.pilot.min_pilots)

    def _scale(self, jobs: int) -> None:
        if self.watch.pilots_broken():
            jobs = 0  # too many pilots in a row never connected: none for a while (queue_watch)
        self._last_scale = time.monotonic()
        if jobs != self._scaled_to:
            log.info("host %s: %d pilot job(s)", self.name, jobs)
        self._scaled_to = jobs
        self.batch.slots.set_pilots(jobs)
        self.cluster.scale(jobs=jobs)

    # ------------------------------------------------------------------ cancel and close
    def cancel(self, futures: list[Future], steps: Iterable[StepRecord], store_url: str) -> None:
        steps = list(steps)
        for future in futures:  # pilot steps and batch waiters belong to different clients
            future.cancel()
        own_jobs = [s.job_id for s in steps if s.job_id and not in_pilot(s)]
        if own_jobs:
            self.batch.cancel(own_jobs)
        for step in steps:
            if not in_pilot(step) or not step.pid or self.client is None:
                continue
            try:
                self.client.run(end_step_processes, step_token(store_url, step.id, step.attempt), step.pid,
                                step.proc_start, workers=[step.worker], nanny=True)
            except (OSError, ValueError, KeyError) as exc:  # the worker is gone already
                log.info("step %s: its worker %s is gone (%s)", step.name, step.worker, exc)

    # ------------------------------------------------------------------ RUNNING from the pilots
    def _on_running(self, event: tuple[float, dict[str, Any]]) -> None:
        """dask calls this on its event loop: only queue the record; the scheduler writes it."""
        self._running.put(event[1])

    def started(self) -> list[tuple[int, int, dict[str, Any]]]:
        return drain_announcements(self._running)

    def close(self) -> None:
        try:
            waiter_cluster = self.waiter.cluster
            self.waiter.close()
            waiter_cluster.close()
            if self.client is not None:
                self.client.close()
                self.cluster.close()
        finally:
            self.batch.close()
            unregister_batch_host(self.name)

    def describe(self) -> dict[str, Any]:
        return {"host": self.name, "pilots": self._scaled_to, "pilot_steps_in_flight": len(self._pilot_cpus)}


def in_pilot(step: StepRecord) -> bool:
    """A step that ran in a pilot records its dask worker's address; one in its own job, ``host:job``."""
    return bool(step.worker) and "://" in str(step.worker)

