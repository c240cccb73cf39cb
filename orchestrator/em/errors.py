"""Errors raised while reading or writing EM file formats.

Each names the file (and, for STAR files, the block and line) so that a user who sees the
message knows which file to look at and what is wrong with it, without a traceback.
"""

from __future__ import annotations

from orchestrator.errors import OrchestratorError


class EmFormatError(OrchestratorError):
    """An EM data file is missing, unreadable or not in the format it claims to be."""


class MrcFormatError(EmFormatError):
    """An MRC file (map, image or stack) is missing, truncated or not an MRC file."""


class StarFormatError(EmFormatError):
    """A STAR file is malformed, or lacks a block or column that the caller needs."""


class RelionConversionError(EmFormatError):
    """A STAR file or particle set cannot be converted between RELION's and our conventions."""
