"""The contract every queue system answers: one small class per system, one module each.

A backend is one class in one module under ``orchestrator/hosts/queues/`` plus its job script
template in ``templates/``, registered in :data:`orchestrator.hosts.queues.BACKENDS`. It
answers a few questions with argument lists and parsers, and never runs anything itself:

- **what it is**: ``kind`` (the hosts file's ``kind = "..."``), ``display_name``,
  ``template_name``, ``directive_prefix``;
- **directives**: the lines for a step's resources, and how its parser of directive lines
  reads a value back (``quote_directive``, ``output_directive``, ``workdir_directive``);
- **submit**: the command, and the job id in what it prints;
- **status**: ONE command for many jobs, its parser, and the table ``STATES`` from the
  queue's state codes to :class:`JobState`;
- **cancel**, **accounting**: commands and parsers;
- **the job's environment**: the variables in which the queue gives a job its id and GPUs;
- **pilots**: the dask-jobqueue class and its queue-specific arguments;
- **checks** for ``orch hosts check``: list the queues, the user's jobs, the GPUs per node;
- **hosts-file keys** of a queue table that only this system knows (``queue_options``).

Polling, reconciliation, retries, job scripts and pilots' common parts live once, above the
backends (:mod:`.poller`, :mod:`.jobs`, :mod:`.jobscript`, :mod:`.pilots`). The contract tests
(``tests/unit/test_queue_backends_contract.py``) run every registered backend through the
same checks.
"""

from __future__ import annotations

import getpass
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from orchestrator.hosts import job_env
from orchestrator.hosts.config.model import HostConfig, PilotConfig, QueueConfig
from orchestrator.hosts.errors import QueueCommandError, ResourceLimitError
from orchestrator.hosts.queues.records import (
    JobAccounting,
    JobRequest,
    JobState,
    JobStatus,
    NodePlan,
    safe_job_name,
)
from orchestrator.hosts.runner import CommandResult
from orchestrator.protocol.steps import Resources

__all__ = ["JobAccounting", "JobRequest", "JobState", "JobStatus", "NodePlan", "QueueBackend", "QueueOption",
           "safe_job_name"]

#: characters no directive parser can carry: they end the line (or the C string) it reads
LINE_BREAKERS = ("\n", "\r", "\0")


@dataclass(frozen=True)
class QueueOption:
    """A key of ``[hosts.X.queues.Q]`` that only one queue system knows (its default and check).

    ``check`` returns the converted value or raises ``ValueError`` with the reason, like the
    checks of :mod:`orchestrator.hosts.config.validate`.
    """

    default: Any
    check: Callable[[Any], Any]
    help: str


class QueueBackend(ABC):
    """What differs between queue systems. Subclasses fill in the class variables and methods."""

    #: the hosts file's ``kind`` for this queue system
    kind: ClassVar[str]
    #: how people call it, in messages
    display_name: ClassVar[str]
    #: the job script template in ``templates/``
    template_name: ClassVar[str]
    #: what starts a directive line of a job script
    directive_prefix: ClassVar[str]
    #: the queue's state codes -> our states (codes missing from the table read UNKNOWN)
    STATES: ClassVar[Mapping[str, JobState]]
    #: GPU and memory requests in the queue's syntax (``{n}``/``{type}``; ``{mb}``/``{mb_per_cpu}``/``{gb}``)
    default_gpu_request: ClassVar[str]
    default_memory_request: ClassVar[str | None] = None
    #: the variable in which the queue gives a job its id
    job_id_variable: ClassVar[str]
    #: the variables in which the queue names a job's GPUs, most specific first (besides
    #: ``CUDA_VISIBLE_DEVICES``, which every worker reads anyway)
    gpu_variables: ClassVar[tuple[str, ...]] = ()
    #: the dask-jobqueue cluster class of its pilots
    pilot_class: ClassVar[str]
    #: hosts-file keys of a queue table that only this queue system knows
    queue_options: ClassVar[Mapping[str, QueueOption]] = {}

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

    def queue_option(self, queue: QueueConfig, name: str) -> Any:
        """A queue's value of one of :attr:`queue_options` (its default when the file has none)."""
        return queue.options.get(name, self.queue_options[name].default)

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
        """Directive arguments (without :attr:`directive_prefix`) for these resources."""

    # -- directive values: each queue parses its directive lines its own way --

    @abstractmethod
    def quote_directive(self, value: str) -> str | None:
        """``value`` written so that the queue's parser of directive lines reads it back
        unchanged (as the last word of its line, or after ``--option=``), or None when that
        parser cannot carry it at all."""

    @abstractmethod
    def output_directive(self, path: str) -> str | None:
        """The directive that sends the job's stdout and stderr, both, to ``path``, or None when
        the queue cannot be told that path: the job script then redirects its output itself,
        and the queue's own output goes to ``/dev/null``."""

    def workdir_directive(self, path: str) -> str | None:
        """The directive that starts the job in ``path`` (None: none, or it cannot carry the
        path). The job script changes to its working directory itself in any case."""
        return None

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
        """Job id -> status for every job in the status command's output ({} for none)."""

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
        """Commands whose outputs hold the accounting records of ``job_ids``, as few as the
        queue allows ([]: the queue keeps no accounting we read)."""
        return []

    def parse_accounting(self, text: str) -> dict[str, JobAccounting]:
        return {}

    def read_accounting(self, result: CommandResult) -> dict[str, JobAccounting]:
        if not result.ok:
            raise QueueCommandError(result.describe(), transient=True)
        return self.parse_accounting(result.stdout)

    # -- the job's environment --

    def job_exports(self) -> list[str]:
        """Shell lines every job script runs first: the queue's job id and GPUs under the
        generic names a compute node reads (:mod:`orchestrator.hosts.job_env`)."""
        return job_env.export_lines(self.job_id_variable, self.gpu_variables)

    # -- pilots --

    def pilot_kwargs(self, pilot: PilotConfig, queue: QueueConfig) -> dict[str, Any]:
        """The arguments of :attr:`pilot_class` that say a pilot's size in this queue's terms
        (beyond cores, memory and wall time). ``job_extra_directives`` are added to the
        host's, the queue's and the pilot section's own."""
        return {}

    # -- checks (``orch hosts check``) --

    @abstractmethod
    def list_queues_command(self) -> list[str]:
        """A command that lists the queue system's queues (partitions)."""

    @abstractmethod
    def parse_queue_names(self, text: str) -> set[str]:
        """The queue names in :meth:`list_queues_command`'s output."""

    @abstractmethod
    def user_jobs_command(self, user: str) -> list[str]:
        """A command that lists ``user``'s jobs (it answers even when there are none)."""

    def gpu_inventory_command(self) -> list[str] | None:
        """A command that shows the GPUs of the nodes by queue (None: not inspected)."""
        return None

    def parse_gpu_inventory(self, text: str) -> dict[str, int]:
        """Queue name -> the most GPUs one of its nodes has, from :meth:`gpu_inventory_command`."""
        return {}
