"""The contract every queue system answers, and the records it answers with.

A backend (``slurm.py``, ``sge.py``, ``pbs.py``) is one small class: the directives for a
step's resources on a queue, the submit command and how to read the job id it prints, one
status command for many jobs and its parser (the queue's state codes mapped to
:class:`JobState` through a table), the cancel command, and the accounting command and its
parser. Backends build argument lists and parse text; they never run anything. Polling,
reconciliation and retries live once, in :mod:`orchestrator.hosts.queues.poller`.
"""

from __future__ import annotations

import enum
import getpass
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from orchestrator.hosts.config.model import HostConfig, HostKind, QueueConfig
from orchestrator.hosts.errors import QueueCommandError, ResourceLimitError
from orchestrator.hosts.runner import CommandResult
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

    ``max_memory_mb`` is the peak the queue measured: SLURM MaxRSS, SGE maxvmem, PBS
    resources_used.mem. ``gpus`` is the number allocated (None: not reported).
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


class QueueBackend(ABC):
    """What differs between queue systems. Subclasses fill in the class variables and methods."""

    kind: ClassVar[HostKind]
    template_name: ClassVar[str]
    #: the queue's state codes -> our states (codes missing from the table read UNKNOWN)
    STATES: ClassVar[Mapping[str, JobState]]
    default_gpu_request: ClassVar[str]
    default_memory_request: ClassVar[str | None] = None

    def __init__(self, host: HostConfig) -> None:
        self.host = host

    @property
    def user(self) -> str:
        """Whose jobs status queries ask for."""
        if self.host.user:
            return self.host.user
        if self.host.ssh is not None and self.host.ssh.user:
            return self.host.ssh.user
        return getpass.getuser()

    def map_state(self, code: str) -> JobState:
        return self.STATES.get(code, JobState.UNKNOWN)

    def match_key(self, job_id: str) -> str:
        """The part of a job id that identifies it in the queue's listings."""
        return job_id

    # -- resources --

    def plan(self, resources: Resources, queue: QueueConfig) -> NodePlan:
        """Lay ``resources`` over ``queue``'s nodes, or raise :class:`ResourceLimitError`."""
        total_cores = resources.cpus * resources.mpi_ranks
        problems = []
        nodes = 1
        if queue.cores:
            if resources.cpus > queue.cores:
                problems.append(f"{resources.cpus} cpus per rank, a node has {queue.cores} cores")
            nodes = max(nodes, math.ceil(total_cores / queue.cores))
        if resources.gpus:
            if not queue.gpus:
                problems.append(f"{resources.gpus} GPUs, the queue has none")
            else:
                nodes = max(nodes, math.ceil(resources.gpus / queue.gpus))
        if nodes > resources.mpi_ranks and nodes > 1:
            problems.append(f"{nodes} nodes for {resources.mpi_ranks} rank(s): ask for more MPI ranks")
        if nodes > queue.max_nodes:
            problems.append(f"{nodes} nodes, the queue allows {queue.max_nodes} per job")
        memory_per_node = math.ceil(resources.memory_mb / nodes) if resources.memory_mb else None
        if memory_per_node and queue.memory_mb and memory_per_node > queue.memory_mb:
            problems.append(f"{memory_per_node} MB per node, a node has {queue.memory_mb} MB")
        if resources.walltime_s and queue.walltime_s and resources.walltime_s > queue.walltime_s:
            problems.append(f"{resources.walltime_s} s of wall time, the queue allows {queue.walltime_s} s")
        if problems:
            raise ResourceLimitError(f"host {self.host.name!r}, queue {queue.name!r}: the step asks for "
                                     + "; ".join(problems))
        return NodePlan(nodes=nodes, ranks_per_node=math.ceil(resources.mpi_ranks / nodes),
                        cores_per_node=math.ceil(total_cores / nodes),
                        gpus_per_node=math.ceil(resources.gpus / nodes) if resources.gpus else 0,
                        memory_mb_per_node=memory_per_node)

    def gpu_request(self, queue: QueueConfig, gpus: int) -> str:
        fmt = queue.gpu_request or self.default_gpu_request
        return fmt.format(n=gpus, type=queue.gpu_type or "")

    def memory_request(self, queue: QueueConfig, memory_mb: int, cpus: int) -> str | None:
        fmt = queue.memory_request or self.default_memory_request
        if fmt is None:
            return None
        return fmt.format(mb=memory_mb, mb_per_cpu=math.ceil(memory_mb / max(cpus, 1)),
                          gb=math.ceil(memory_mb / 1024))

    def walltime_s(self, resources: Resources, queue: QueueConfig) -> int | None:
        return resources.walltime_s or queue.walltime_s

    @abstractmethod
    def directives(self, resources: Resources, queue: QueueConfig) -> list[str]:
        """Directive arguments (without the ``#SBATCH``-like prefix) for these resources."""

    # -- submit --

    @abstractmethod
    def submit_command(self) -> list[str]:
        """The submit command; the job script arrives on its standard input."""

    @abstractmethod
    def parse_job_id(self, text: str) -> str:
        """The job id in the submit command's output; :class:`JobSubmitError` if there is none."""

    # -- status --

    @abstractmethod
    def status_command(self, job_ids: Sequence[str]) -> list[str]:
        """ONE command that reports on all of ``job_ids`` (it may report others too)."""

    @abstractmethod
    def parse_status(self, text: str) -> dict[str, JobStatus]:
        """Job id -> status for every job in the status command's output."""

    def read_status(self, result: CommandResult) -> dict[str, JobStatus]:
        """Parse a status result; a failed command is a transient :class:`QueueCommandError`."""
        if not result.ok:
            raise QueueCommandError(result.describe(), transient=True)
        return self.parse_status(result.stdout)

    # -- cancel --

    @abstractmethod
    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        """One command that cancels all of ``job_ids``."""

    def cancel_succeeded(self, result: CommandResult) -> bool:
        """True when the cancel worked or the jobs had already ended."""
        return result.ok

    # -- accounting --

    def accounting_commands(self, job_ids: Sequence[str]) -> list[list[str]]:
        """Commands whose outputs hold the accounting records of ``job_ids`` (as few as the
        queue allows: one for SLURM and PBS, one per job for SGE's qacct)."""
        return []

    def parse_accounting(self, text: str) -> dict[str, JobAccounting]:
        return {}

    def read_accounting(self, result: CommandResult) -> dict[str, JobAccounting]:
        if not result.ok:
            raise QueueCommandError(result.describe(), transient=True)
        return self.parse_accounting(result.stdout)
