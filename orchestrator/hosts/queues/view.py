"""What ``orch queue`` shows: the batch jobs of a project's steps, as their queues see them now.

The job ids come from the project store (steps with a ``job_id``); each host is asked once,
with one batched status query for all of its jobs (plus accounting for those that left the
queue). Nothing is written back: the scheduler owns the store's states.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.hosts.config.model import HostRegistry
from orchestrator.hosts.errors import HostError
from orchestrator.hosts.queues import backend_for
from orchestrator.hosts.queues.poller import PollSettings, QueuePoller
from orchestrator.hosts.runner import CommandRunner, runner_for
from orchestrator.store import ProjectStore, StepState

OPEN_STEP_STATES = (StepState.QUEUED, StepState.RUNNING)


@dataclass(frozen=True)
class QueueRow:
    host: str
    job_id: str
    run: str
    step: str
    step_state: str
    state: str
    partition: str | None
    elapsed_s: float | None
    node: str | None
    gpus: str | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _StepJob:
    run: str
    step: str
    step_state: str
    job_dir: str | None


def jobs_in_store(store: ProjectStore, host: str | None = None,
                  include_finished: bool = False) -> dict[str, dict[str, list[_StepJob]]]:
    """host -> job id -> the steps that job runs (a pilot job runs many)."""
    states = None if include_finished else OPEN_STEP_STATES
    jobs: dict[str, dict[str, list[_StepJob]]] = defaultdict(lambda: defaultdict(list))
    for run in store.runs.list():
        for step in store.steps.list(run.id, states):
            if not step.job_id or not step.host or (host is not None and step.host != host):
                continue
            job_dir = (step.accounting or {}).get("job_dir")
            jobs[step.host][step.job_id].append(_StepJob(run.name, step.name, step.state, job_dir))
    return jobs


def queue_rows(store: ProjectStore, hosts: HostRegistry, host: str | None = None, *,
               include_finished: bool = False, runners: dict[str, CommandRunner] | None = None
               ) -> tuple[list[QueueRow], dict[str, str]]:
    """The rows to show, and per host the error that kept it from answering."""
    rows: list[QueueRow] = []
    errors: dict[str, str] = {}
    if host is not None:
        hosts.get(host)  # an unknown host name is an error, even with no jobs
    for host_name, jobs in sorted(jobs_in_store(store, host, include_finished).items()):
        statuses = {}
        try:
            config = hosts.get(host_name)
            backend = backend_for(config)
            runner = (runners or {}).get(host_name) or runner_for(config)
            poller = QueuePoller(backend, runner, settings=PollSettings(lost_after_s=float("inf")))
            for job_id, steps in jobs.items():
                poller.watch(job_id, job_dir=next((s.job_dir for s in steps if s.job_dir), None))
            poller.poll_once()
            if poller.stats.status_failures:
                errors[host_name] = poller.stats.last_error or "status query failed"
            statuses = poller.snapshot()
        except HostError as exc:
            errors[host_name] = str(exc)
        for job_id, steps in sorted(jobs.items(), key=lambda item: _job_sort_key(item[0])):
            status = statuses.get(job_id)
            for step in steps:
                rows.append(QueueRow(
                    host=host_name, job_id=job_id, run=step.run, step=step.step, step_state=step.step_state,
                    state=status.state.value if status and host_name not in errors else "?",
                    partition=status.queue if status else None, elapsed_s=status.elapsed_s if status else None,
                    node=status.nodes if status else None, gpus=status.gpus if status else None,
                    reason=(status.reason if status and host_name not in errors else errors.get(host_name))))
    return rows, errors


def _job_sort_key(job_id: str) -> tuple[int, str]:
    head = job_id.split(".", 1)[0].split("_", 1)[0]
    return (int(head) if head.isdigit() else 0, job_id)
