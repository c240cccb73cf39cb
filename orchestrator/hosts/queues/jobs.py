"""Direct batch jobs: a step that needs more than a pilot holds runs as its own job.

:class:`BatchQueue` submits one step with exactly its resources (cpus per rank, MPI ranks as
tasks, memory, wall time, GPUs in the queue's own syntax) and follows it through the host's
one :class:`QueuePoller`, which also settles it from accounting or its exit sentinel.

How a dask task waits cheaply
-----------------------------
The poller runs in the scheduler process: one batched status query per host per interval,
however many jobs and tasks wait. A task never runs the queue's status command itself (a
thousand waiting tasks would make a thousand queries): the tasks that wait on batch jobs run
on threads of the scheduler's own process (:mod:`orchestrator.scheduler.executors.batch`) and
block in :meth:`BatchQueue.wait`, on the poller's condition variable.

The exit sentinel alone would not do: a job killed by the queue (wall time, a cancel, node
failure) may never write it, and only the queue (or its accounting) can say so.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.errors import JobSubmitError
from orchestrator.hosts.queues import backend_for
from orchestrator.hosts.queues.base import JobRequest, JobStatus
from orchestrator.hosts.queues.job_slots import JobSlots
from orchestrator.hosts.queues.jobscript import SCRIPT_NAME, render_job_script
from orchestrator.hosts.queues.poller import PollSettings, QueuePoller
from orchestrator.hosts.runner import CommandRunner, runner_for

SUBMIT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    host: str
    queue: str
    job_dir: str
    script_path: str
    submitted_at: datetime


class BatchQueue:
    """Submit, follow and cancel direct batch jobs on one queue host."""

    def __init__(self, host: HostConfig, *, runner: CommandRunner | None = None, poller: QueuePoller | None = None,
                 settings: PollSettings | None = None) -> None:
        self.host = host
        self.backend = backend_for(host)
        self.runner = runner or runner_for(host)
        self.poller = poller or QueuePoller(self.backend, self.runner, settings=settings)
        #: the host's ``max_jobs``, shared with its pilots (see :class:`JobSlots`)
        self.slots = JobSlots(host.max_jobs)

    def start(self) -> BatchQueue:
        self.poller.start()
        return self

    def close(self) -> None:
        self.poller.stop()

    def __enter__(self) -> BatchQueue:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def render(self, request: JobRequest) -> str:
        """The job script ``submit`` would send (checks the resources against the queue)."""
        return render_job_script(self.backend, request)

    def submit(self, request: JobRequest) -> SubmittedJob:
        """Write the script to ``job_dir/job.sh``, submit it, watch the job; its id."""
        script = self.render(request)
        self.runner.make_dirs(request.job_dir)
        script_path = posixpath.join(request.job_dir, SCRIPT_NAME)
        self.runner.write_text(script_path, script)
        result = self.runner.run(self.backend.submit_command(), input_text=script, timeout_s=SUBMIT_TIMEOUT_S)
        if not result.ok:
            raise JobSubmitError(f"host {self.host.name!r} refused job {request.name!r}: {result.describe()}")
        job_id = self.backend.parse_job_id(result.stdout)
        self.poller.watch(job_id, job_dir=request.job_dir)
        return SubmittedJob(job_id=job_id, host=self.host.name, queue=self.host.queue(request.queue).name,
                            job_dir=request.job_dir, script_path=script_path, submitted_at=datetime.now(UTC))

    def wait(self, job_id: str, timeout_s: float | None = None) -> JobStatus:
        """Block until the host's poller settles ``job_id``; after ``timeout_s`` the current,
        unsettled status comes back (check ``status.is_final``)."""
        return self.poller.wait(job_id, timeout_s)

    def cancel(self, job_ids: list[str]) -> None:
        """The queue's cancel command, once for all ``job_ids``; the jobs settle as CANCELLED."""
        self.poller.cancel(job_ids)

    def open_jobs(self) -> int:
        return sum(1 for status in self.poller.snapshot().values() if not status.is_final)

    def capacity_left(self) -> int | None:
        """How many more jobs ``max_jobs`` allows (None: no limit). Pilots count separately."""
        if self.host.max_jobs is None:
            return None
        return max(0, self.host.max_jobs - self.open_jobs())


def accounting_fields(status: JobStatus, host: str) -> dict[str, Any]:
    """What a step's record keeps of its batch job (``StepRecord.accounting``)."""
    acct = status.accounting
    return {
        "host": host, "job_id": status.job_id, "state": status.state.value, "queue": status.queue,
        "exit_code": status.exit_code, "reason": status.reason, "source": status.source,
        "nodes": (acct.nodes if acct else None) or status.nodes,
        "elapsed_s": (acct.elapsed_s if acct else None) or status.elapsed_s,
        "cpu_time_s": acct.cpu_time_s if acct else None,
        "max_memory_mb": acct.max_memory_mb if acct else None,
        "gpus": acct.gpus if acct and acct.gpus is not None else status.gpus,
        "native_state": (acct.native_state if acct else None) or status.native_state,
    }
