"""The error of an export that cannot be done as asked: it names the run, file or folder at fault."""

from __future__ import annotations

from orchestrator.errors import OrchestratorError


class ExportError(OrchestratorError):
    """An export cannot be written: a taken destination, a run without what the export needs,
    a file that cannot be read. Nothing that was there before the export is touched."""
