"""Errors of the protocol API.

Two audiences: a *definition* error is a bug in a protocol or plugin (raised when its
class is created or its step graph is built) and names the protocol, step or param so the
plugin author can fix it; the param errors (re-exported from
:mod:`orchestrator.objects.params`) are the user's, raised when params are validated.
"""

from orchestrator.errors import OrchestratorError
from orchestrator.objects.params import ParamDefinitionError, ParamValidationError, ParamValueError

__all__ = [
    "FingerprintError",
    "OutputError",
    "ParamDefinitionError",
    "ParamValidationError",
    "ParamValueError",
    "ProtocolDefinitionError",
    "ProtocolError",
    "StepDefinitionError",
    "StepFunctionError",
    "StepGraphError",
    "StepResultError",
]


class ProtocolError(OrchestratorError):
    """Base of the protocol API's own errors (not the user's param errors)."""


class ProtocolDefinitionError(ProtocolError):
    """A Protocol subclass is declared wrongly (bad name, duplicate params, bad condition)."""


class StepDefinitionError(ProtocolError):
    """A step is malformed: bad name, non-JSON argument, bad resources, bad output path."""


class StepGraphError(StepDefinitionError):
    """The steps of a run do not form a valid graph: duplicate name, missing dep, cycle."""


class StepFunctionError(ProtocolError):
    """A step function is not a module-level callable, or its import path does not load."""


class StepResultError(ProtocolError):
    """A step function returned something other than None or a JSON-serialisable dict."""


class FingerprintError(ProtocolError):
    """An input file cannot be fingerprinted (missing or unreadable); names the path."""


class OutputError(ProtocolError):
    """The outputs reported by a run's steps do not match the protocol's declared outputs."""
