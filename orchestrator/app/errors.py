"""The errors the application layer raises, and what a web front end answers for each.

Every error is an :class:`~orchestrator.errors.OrchestratorError` whose message names what is
at fault (the project, run, step, param, file or host), so a front end shows it as it is:

- :class:`~orchestrator.errors.NotFoundError` (or another error with its exit code 3, like an
  unknown host): no such project, run, step, set, protocol or host;
- :class:`~orchestrator.store.TransitionRefused` (a ``UsageError``): the run's state does not
  allow it (cancel a finished run, restart a running one);
- :class:`~orchestrator.errors.UsageError`: bad params, bad arguments, a malformed workflow file;
- :class:`SchedulerBusyError`: another scheduler already serves the project;
- any other ``OrchestratorError``: the store, a host or the scheduler failed (the message says how).
"""

from __future__ import annotations

from orchestrator.errors import NotFoundError, OrchestratorError, UsageError

__all__ = ["NotFoundError", "OrchestratorError", "SchedulerBusyError", "UsageError", "http_status"]


class SchedulerBusyError(OrchestratorError):
    """A scheduler already serves the project (there is one per project)."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


def http_status(error: OrchestratorError) -> int:
    """The HTTP status a web front end answers with for ``error``: the CLI's exit codes say the kind
    (3: not found, 2: usage), a refused state change or a busy scheduler is a conflict."""
    from orchestrator.store import TransitionRefused

    if isinstance(error, (TransitionRefused, SchedulerBusyError)):
        return 409
    if error.exit_code == NotFoundError.exit_code:  # NotFoundError, an unknown host, ...
        return 404
    if error.exit_code == UsageError.exit_code:
        return 400
    return 500
