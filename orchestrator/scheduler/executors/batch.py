"""A step too big for a pilot runs as its own batch job; a dask task waits for it.

Two halves:

- :func:`run_batch_step` is the dask task. It runs in the scheduler's own process, on a
  thread worker that only takes these tasks, so waiting costs no pilot and no worker slot.
  It writes the step's payload next to the job, submits the job through the host's
  :class:`BatchQueue` with exactly the step's resources, records the job id on the step,
  and blocks on the host's one :class:`QueuePoller` (one batched status
  query per interval for all jobs). When the job is settled (from accounting or the exit
  sentinel) it records the accounting on the step. A job the queue killed before the step
  could record its end (wall time, ``scancel``, node failure) is recorded FAILED here with
  the queue's reason and the end of the job's output.
- what the job itself runs is :mod:`orchestrator.worker.batch_job`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from orchestrator.scheduler.executors import live
from orchestrator.store import ProjectStore, StepState
from orchestrator.worker.batch_job import JOB_OUTPUT, PAYLOAD_FILE, host_payload, job_dir_for
from orchestrator.worker.runtime import StepFailed, StepPayload, log_tail

if TYPE_CHECKING:
    from orchestrator.hosts.queues.jobs import BatchQueue

@dataclass(frozen=True)
class BatchHost:
    """What the waiting tasks of one host need, registered in :mod:`.live` under the host's name."""

    queue: BatchQueue
    store: ProjectStore
    python: str


def register_batch_host(queue: BatchQueue, store: ProjectStore, python: str) -> None:
    """Make a host's queue known to the waiting tasks of this process (by host name)."""
    live.register("batch host", queue.host.name, BatchHost(queue, store, python))


def unregister_batch_host(name: str) -> None:
    live.unregister("batch host", name)


def run_batch_step(host_name: str, payload: StepPayload, resources: dict[str, Any]) -> dict[str, Any] | None:
    """Submit the step as its own job, wait until the queue settles it, record the outcome."""
    host = live.lookup("batch host", host_name, BatchHost)
    with host.queue.slots.batch_job():  # the host's max_jobs: wait here, unsubmitted, while it is full
        return _submit_and_settle(host.queue, host.store, host.python, payload, resources)


def _submit_and_settle(queue: BatchQueue, store: ProjectStore, python: str, payload: StepPayload,
                       resources: dict[str, Any]) -> dict[str, Any] | None:
    # Here, not at the top: every batch job imports this module to run ``main``, and the
    # queue machinery (job script templates, every backend) would add 0.2 s to each of them.
    from orchestrator.hosts.queues.base import JobRequest, JobState
    from orchestrator.hosts.queues.jobs import accounting_fields
    from orchestrator.protocol.steps import Resources

    host_name = queue.host.name
    if store.steps.get(payload.step_id).step_state is not StepState.QUEUED:
        return {"skipped": True}  # cancelled before its job was submitted
    host = queue.host
    job_dir = job_dir_for(payload)  # here; as the host sees it below (shared file system)
    on_host = host_payload(payload, host.map_path)
    host_job_dir = host.map_path(job_dir)
    payload_path = f"{host_job_dir}/{PAYLOAD_FILE}"
    queue.runner.make_dirs(host_job_dir)
    queue.runner.write_text(payload_path, json.dumps(asdict(on_host)))
    request = JobRequest(name=f"orch-{payload.run_id}-{payload.step_name}"[:60],
                         command=[python, "-m", "orchestrator.worker.batch_job", payload_path],
                         job_dir=host_job_dir, resources=Resources(**resources), workdir=on_host.run_dir)
    job = queue.submit(request)
    store.steps.update(payload.step_id, job_id=job.job_id)
    status = queue.wait(job.job_id)
    accounting = accounting_fields(status, host_name)
    store.steps.update(payload.step_id, accounting=accounting)
    record = store.steps.get(payload.step_id)
    if status.state is JobState.DONE and status.exit_code == 0 and record.step_state is StepState.FINISHED:
        return record.result
    if record.step_state is StepState.FAILED:
        raise StepFailed((record.error or "failed").splitlines()[0])
    if record.step_state is StepState.CANCELLED:
        return {"skipped": True}
    # The job ended without the step recording its end: the queue killed it, or it never ran.
    why = f"batch job {job.job_id} on {host_name} ended {status.state.value}" + \
        (f" (exit code {status.exit_code})" if status.exit_code is not None else "") + \
        (f": {status.reason}" if status.reason else "")
    tail = log_tail(job_dir / JOB_OUTPUT)
    store.steps.transition(payload.step_id, StepState.FAILED, message=why,
                           expected=(StepState.QUEUED, StepState.RUNNING), finished_at=datetime.now(UTC),
                           error=f"{why}\n--- last lines of {job_dir / JOB_OUTPUT} ---\n{tail}")
    raise StepFailed(why)
