"""A project's batch jobs as their queues see them now: one batched status query per host.

The job ids come from the store (steps with a job id); nothing is written back, the scheduler
owns the states. A host whose queue does not answer now is reported in ``errors``, not raised;
``hosts`` is what the scheduler last reported of each host's health (unreachable since when,
and why), from the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.app.host_health import HostHealthInfo, hosts_health
from orchestrator.app.serialize import Record
from orchestrator.hosts.config.loader import load_hosts
from orchestrator.hosts.queues.view import QueueRow, queue_rows


@dataclass(frozen=True)
class QueueReport(Record):
    """The project's batch jobs (``jobs``), per host the error that kept its queue from answering
    now (``errors``), and the hosts' health as the scheduler last reported it (``hosts``)."""

    project: str
    jobs: list[QueueRow]
    errors: dict[str, str]
    hosts: list[HostHealthInfo]


def queue_jobs(target: ProjectTarget, host: str | None = None, *, include_finished: bool = False) -> QueueReport:
    """Every queued or running batch job of the project (on ``host`` only, when given; also those
    of steps that ended with ``include_finished``). An unknown host is a NotFoundError."""
    with project_store(target) as (project, store):
        rows, errors = queue_rows(store, load_hosts(project.path), host, include_finished=include_finished)
        health = hosts_health(store, host)
    return QueueReport(project.name, rows, errors, health)
