"""Errors raised when a project store cannot be opened or used."""

from orchestrator.errors import OrchestratorError


class StoreError(OrchestratorError):
    """A project store problem; the message names the store (file or URL)."""


class NotAStoreError(StoreError):
    """The file or database exists but is not an em-orchestrator project store."""


class NewerSchemaError(StoreError):
    """The store was written by a newer em-orchestrator than this one."""


class CorruptStoreError(StoreError):
    """The store's file is damaged."""
