"""The records queue backends answer with: our view of a job, its accounting, one job to submit.

They are the same whatever the queue system: a backend maps its queue's codes and fields onto
them (see :mod:`orchestrator.hosts.queues.base`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.protocol.steps import Resources


class JobState(enum.StrEnum):
    """Our view of a batch job, whatever the queue system calls it."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobAccounting:
    """What the queue's accounting says about a job that ended.

    ``max_memory_mb`` is the peak memory the queue measured (each backend says which of its
    fields it reads). ``gpus`` is the number allocated (None: not reported).
    """

    job_id: str
    state: JobState
    native_state: str = ""
    exit_code: int | None = None
    signal: int | None = None
    elapsed_s: float | None = None
    cpu_time_s: float | None = None
    max_memory_mb: float | None = None
    nodes: str | None = None
    gpus: int | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


@dataclass(frozen=True)
class JobStatus:
    """One job as the queue (or, once it left the queue, accounting or its sentinel) shows it.

    ``source`` says where the state came from: ``queue``, ``accounting``, ``sentinel``, ``lost``.
    """

    job_id: str
    state: JobState
    native_state: str = ""
    queue: str | None = None
    elapsed_s: float | None = None
    nodes: str | None = None
    gpus: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    source: str = "queue"
    accounting: JobAccounting | None = None

    @property
    def is_final(self) -> bool:
        return self.state.is_final

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["accounting"] = self.accounting.to_dict() if self.accounting else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobStatus:
        values = dict(data)
        values["state"] = JobState(values["state"])
        accounting = values.get("accounting")
        if accounting:
            values["accounting"] = JobAccounting(**{**accounting, "state": JobState(accounting["state"])})
        return cls(**values)


@dataclass(frozen=True)
class JobRequest:
    """One step to run as its own batch job.

    ``job_dir`` is a directory on the host (already mapped): the script, its output and the
    ``exit_code`` sentinel go there. ``command`` is an argument list, run as is.
    """

    name: str
    command: Sequence[str]
    job_dir: str
    resources: Resources = field(default_factory=Resources)
    queue: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None


@dataclass(frozen=True)
class NodePlan:
    """How a step's resources are laid over a queue's nodes."""

    nodes: int
    ranks_per_node: int
    cores_per_node: int
    gpus_per_node: int
    memory_mb_per_node: int | None


_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_job_name(name: str, limit: int = 64) -> str:
    """A job name every queue accepts: letters, digits, ``_ . -``, starting with a letter."""
    cleaned = _JOB_NAME_UNSAFE.sub("_", name).strip("_.-") or "job"
    if not cleaned[0].isalpha():
        cleaned = "j" + cleaned
    return cleaned[:limit]
