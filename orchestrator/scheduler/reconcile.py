"""After a scheduler died (kill -9, power cut): make the store tell the truth again.

Steps the dead scheduler had QUEUED never started or were lost with its cluster; steps it
had RUNNING ran in worker processes that may have outlived it. Those processes are killed
(a half-done step cannot be trusted), and so are the batch jobs of steps on queue hosts
(``scancel``/``qdel``, one command per host), then the steps go back to PENDING so the next
scheduler runs them. FINISHED steps are left alone: workers record FINISHED themselves,
so what is finished in the store really finished, and is not run again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from orchestrator.errors import OrchestratorError
from orchestrator.store import ProjectStore, RunState, StepState, StepTransition
from orchestrator.worker.processes import is_alive, kill_tree

log = logging.getLogger("orchestrator.scheduler")


def reconcile_after_crash(store: ProjectStore, local_host: str = "local",
                          project_dir: Path | None = None) -> list[int]:
    """Re-queue the in-flight steps of RUNNING runs; return the ids of the steps re-queued."""
    requeue: list[StepTransition] = []
    orphan_jobs: dict[str, list[str]] = defaultdict(list)
    for run in store.runs.list([RunState.RUNNING]):
        for step in store.steps.list(run.id, [StepState.QUEUED, StepState.RUNNING]):
            if step.job_id and step.host and step.host != local_host and not _in_dask_worker(step.worker):
                orphan_jobs[step.host].append(step.job_id)  # its own batch job (a pilot is not the step's)
            local = step.state == StepState.RUNNING.value and step.host == local_host
            if local and step.pid is not None and is_alive(step.pid):
                log.warning("killing orphaned worker %s of step %s (run %s)", step.pid, step.name, run.name)
                kill_tree(step.pid)
            requeue.append(StepTransition(
                step.id, StepState.PENDING, f"re-queued: the scheduler stopped while the step was {step.state}",
                {"worker": None, "pid": None}, expected=(StepState.QUEUED, StepState.RUNNING)))
    for host, job_ids in orphan_jobs.items():
        _cancel_jobs(host, job_ids, project_dir)
    return store.steps.transitions(requeue)


def _in_dask_worker(worker: str | None) -> bool:
    """A step in a pilot records its dask worker's address; one in its own job, ``host:pid``."""
    return bool(worker) and "://" in str(worker)


def _cancel_jobs(host_name: str, job_ids: list[str], project_dir: Path | None) -> None:
    """End the batch jobs a dead scheduler left; a host that cannot be asked is only logged."""
    from orchestrator.hosts.config.loader import load_hosts
    from orchestrator.hosts.queues import backend_for
    from orchestrator.hosts.runner import runner_for

    try:
        host = load_hosts(project_dir).get(host_name)
        backend = backend_for(host)
        result = runner_for(host).run(backend.cancel_command(job_ids), timeout_s=60)
    except OrchestratorError as exc:
        log.warning("could not cancel the orphaned jobs %s on host %s: %s", job_ids, host_name, exc)
        return
    log.warning("cancelled orphaned batch jobs %s on host %s (%s)", job_ids, host_name,
                "done" if backend.cancel_succeeded(result) else result.describe())
