"""Errors of host configuration and queue systems, each with a message a user can act on."""

from __future__ import annotations

from orchestrator.errors import OrchestratorError


class HostError(OrchestratorError):
    """Base of everything that goes wrong with an execution host."""


class HostConfigError(HostError):
    """A hosts file is invalid; the message names the file, the host and the key at fault."""

    exit_code = 2


class UnknownHostError(HostError):
    """A host name that no hosts file defines."""

    exit_code = 3


class ResourceLimitError(HostError):
    """A step asks for more than the host's queue can give (cores, memory, GPUs, walltime)."""


class JobScriptError(HostError):
    """A job script cannot be rendered safely (missing template, unsafe value)."""


class QueueCommandError(HostError):
    """A queue command (submit, status, cancel, accounting) failed or answered something unexpected.

    ``transient`` is true when trying again later may work (timeout, controller down).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class AccountingUnavailable(QueueCommandError):
    """The queue keeps no accounting we can read (its accounting service or file is missing)."""


class JobSubmitError(QueueCommandError):
    """The queue refused a job, or its answer held no job id."""
