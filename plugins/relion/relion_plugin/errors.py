"""Errors of the RELION plugin; each says which program, file or param to look at."""

from __future__ import annotations

from orchestrator.errors import OrchestratorError, UsageError


class RelionError(OrchestratorError):
    """Something went wrong around a RELION program."""


class RelionInputError(RelionError, UsageError):
    """The input of a RELION protocol cannot be used (a missing stack, no optics, ...)."""


class RelionRunError(RelionError):
    """A RELION program exited with an error, or could not be started."""


class RelionOutputError(RelionError):
    """A RELION program exited 0 but its outputs are missing, truncated or hold NaN.

    RELION often reports success after a failure (a truncated stack gives zeros, a missing
    helper program an empty STAR file), so every protocol checks what it wrote.
    """
