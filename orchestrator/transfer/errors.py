"""Errors of staging files to and from hosts, each naming the host and the file."""

from __future__ import annotations

from orchestrator.errors import OrchestratorError


class TransferError(OrchestratorError):
    """Files could not be moved; the message lists which and why (the rest were moved and recorded)."""


class TransferInterrupted(TransferError):
    """The connection or the remote process went away mid-transfer; trying again resumes."""


class VerificationError(TransferError):
    """What arrived does not hash to what was sent; the partial copy was discarded."""


class RemoteAgentError(TransferError):
    """The remote helper could not start or misbehaved (no python3 on the host, protocol error)."""


class SourceChangedError(TransferError):
    """A local file changed while it was being sent."""
