"""A step too big for a pilot runs as its own batch job; a dask task waits for it.

:func:`run_batch_step` is the dask task. It runs in the scheduler's own process, on a thread
worker that only takes these tasks, so waiting costs no pilot and no worker slot. It writes the
step's payload into the attempt's folder (owner-only), submits the job through the host's
:class:`BatchQueue` with exactly the step's resources, notes the job id on the step, and follows
it on the host's one :class:`QueuePoller` (one batched status query per interval for all jobs):
RUNNING is recorded when the queue says the job runs. When the job is settled (from accounting
or the exit sentinel), the task notes the accounting and returns the outcome record the job
left (see :mod:`orchestrator.worker.outcome`), which the scheduler records. A job the queue
killed before the step could leave its record (wall time, ``scancel``, node failure) becomes a
failed outcome with the queue's reason and the end of the job's output. What the job itself
runs is :mod:`orchestrator.worker.batch_job`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.hosts.queues.base import JobRequest, JobState
from orchestrator.hosts.queues.jobs import BatchQueue, accounting_fields
from orchestrator.protocol.steps import Resources
from orchestrator.scheduler.executors import live
from orchestrator.scheduler.executors.base import host_path_map
from orchestrator.store import ProjectStore, StepState
from orchestrator.worker.batch_job import JOB_OUTPUT, PAYLOAD_FILE, job_dir_for
from orchestrator.worker.outcome import OutcomeError, StepOutcome, read_outcome
from orchestrator.worker.remote import remote_payload
from orchestrator.worker.runtime import StepPayload
from orchestrator.worker.step_output import log_tail

#: how often the waiting task looks at its job's status (from the poller's memory: no queue command)
WAIT_SLICE_S = 5.0


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


def run_batch_step(host_name: str, payload: StepPayload, resources: dict[str, Any]) -> StepOutcome | None:
    """Submit the step as its own job, wait until the queue settles it; the outcome it left (None: not run)."""
    host = live.lookup("batch host", host_name, BatchHost)
    with host.queue.slots.batch_job():  # the host's max_jobs: wait here, unsubmitted, while it is full
        return _submit_and_settle(host.queue, host.store, host.python, payload, resources)


def _submit_and_settle(queue: BatchQueue, store: ProjectStore, python: str, payload: StepPayload,
                       resources: dict[str, Any]) -> StepOutcome | None:
    lifecycle = store.lifecycle
    current = store.steps.get(payload.step_id)
    if current.step_state is not StepState.QUEUED or current.attempt != payload.attempt:
        return None  # cancelled (or superseded) before its job was submitted
    host = queue.host
    job_dir = job_dir_for(payload)  # here; as the host sees it below (shared file system)
    path_map = host_path_map(host, Path(payload.project_dir))
    on_host = remote_payload(payload, path_map)
    host_job_dir = path_map.to_remote(str(job_dir))
    payload_path = f"{host_job_dir}/{PAYLOAD_FILE}"
    queue.runner.make_dirs(host_job_dir)
    queue.runner.run(["chmod", "700", host_job_dir])  # the payload names the project's files: owner only
    queue.runner.write_text(payload_path, json.dumps(asdict(on_host)))
    request = JobRequest(name=f"orch-{payload.run_id}-{payload.step_name}"[:60],
                         command=[python, "-m", "orchestrator.worker.batch_job", payload_path],
                         job_dir=host_job_dir, resources=Resources(**resources), workdir=on_host.run_dir)
    job = queue.submit(request)
    lifecycle.annotate_step(payload.step_id, payload.attempt, job_id=job.job_id)
    while True:
        status = queue.wait(job.job_id, timeout_s=WAIT_SLICE_S)
        if status.is_final:
            break
        if status.state is JobState.RUNNING:
            lifecycle.start_step(payload.step_id, payload.attempt, host=host.name, job_id=job.job_id,
                                 started_at=datetime.now(UTC))
    lifecycle.annotate_step(payload.step_id, payload.attempt, accounting=accounting_fields(status, host.name))
    try:
        outcome = read_outcome(job_dir)
    except OutcomeError as exc:
        outcome, problem = None, f"; its outcome record is damaged: {exc}"
    else:
        problem = ""
    if outcome is not None and outcome.attempt == payload.attempt:
        if outcome.result is not None:
            outcome.result = path_map.to_local(outcome.result)
        return outcome
    # The job ended without the step leaving its outcome: the queue killed it, or it never ran.
    why = f"batch job {job.job_id} on {host.name} ended {status.state.value}" + \
        (f" (exit code {status.exit_code})" if status.exit_code is not None else "") + \
        (f": {status.reason}" if status.reason else "") + problem
    return StepOutcome(step_id=payload.step_id, run_id=payload.run_id, attempt=payload.attempt, ok=False,
                       result=None, error=why, log_path=str(job_dir / JOB_OUTPUT),
                       log_tail=log_tail(job_dir / JOB_OUTPUT), started_at=datetime.now(UTC), duration_s=0.0,
                       peak_memory_mb=0.0, worker=f"{host.name}:job {job.job_id}", pid=0, proc_start=None,
                       host=host.name, job_id=job.job_id)
