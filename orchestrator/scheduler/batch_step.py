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
- ``python -m orchestrator.scheduler.batch_step PAYLOAD`` is what the job runs: the usual
  :func:`run_step_task` with the GPUs the queue allocated to the job.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.hosts.gpus import allocated_gpus
from orchestrator.scheduler.worker_task import StepFailed, StepPayload, log_tail, run_step_task
from orchestrator.store import ProjectStore, StepState

if TYPE_CHECKING:  # the waiting half's; the job itself (``main``) does without them
    from orchestrator.hosts.batch import BatchQueue

PAYLOAD_FILE = "payload.json"
JOB_OUTPUT = "job.out"

_queues: dict[str, tuple[BatchQueue, ProjectStore, str]] = {}
_queues_lock = threading.Lock()


def register_batch_host(queue: BatchQueue, store: ProjectStore, python: str) -> None:
    """Make a host's queue known to the waiting tasks of this process (by host name)."""
    with _queues_lock:
        _queues[queue.host.name] = (queue, store, python)


def unregister_batch_host(name: str) -> None:
    with _queues_lock:
        _queues.pop(name, None)


def host_payload(payload: StepPayload, map_path: Callable[[str], str]) -> StepPayload:
    """The payload with its paths as the queue host sees them (its ``path_map``)."""
    return replace(payload, project_dir=map_path(payload.project_dir), run_dir=map_path(payload.run_dir),
                   log_path=map_path(payload.log_path), store_url=map_path(payload.store_url))


def job_dir_for(payload: StepPayload) -> Path:
    return Path(payload.run_dir) / "jobs" / f"{payload.step_name}.a{payload.attempt}"


def run_batch_step(host_name: str, payload: StepPayload, resources: dict[str, Any]) -> dict[str, Any] | None:
    """Submit the step as its own job, wait until the queue settles it, record the outcome."""
    with _queues_lock:
        queue, store, python = _queues[host_name]
    with queue.slots.batch_job():  # the host's max_jobs: wait here, unsubmitted, while it is full
        return _submit_and_settle(queue, store, python, payload, resources)


def _submit_and_settle(queue: BatchQueue, store: ProjectStore, python: str, payload: StepPayload,
                       resources: dict[str, Any]) -> dict[str, Any] | None:
    # Here, not at the top: every batch job imports this module to run ``main``, and the
    # queue machinery (job script templates, every backend) would add 0.2 s to each of them.
    from orchestrator.hosts.batch import accounting_fields
    from orchestrator.hosts.queues.base import JobRequest, JobState
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
                         command=[python, "-m", "orchestrator.scheduler.batch_step", payload_path],
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


def main(argv: list[str] | None = None) -> int:
    """Inside the batch job: run the step with the GPUs the queue gave this job."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m orchestrator.scheduler.batch_step PAYLOAD.json", file=sys.stderr)
        return 2
    fields = json.loads(Path(args[0]).read_text())
    payload = StepPayload(**fields)
    gpus = allocated_gpus()
    if gpus:
        payload.gpus = [int(g) if g.isdigit() else g for g in gpus]  # type: ignore[misc]
    try:
        run_step_task(payload)
    except StepFailed as exc:
        print(f"step failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
