"""Exception types shared by the whole package.

Every error a user can cause derives from :class:`OrchestratorError`; the CLI prints its
message (which names the file, key or parameter at fault) and exits with its ``exit_code``
instead of showing a traceback.
"""


class OrchestratorError(Exception):
    """Base of all errors that are reported to the user as a clear message."""

    exit_code = 1


class UsageError(OrchestratorError):
    """The command line or API was called with wrong arguments."""

    exit_code = 2


class NotFoundError(OrchestratorError):
    """A project, run, set or other named thing does not exist."""

    exit_code = 3
