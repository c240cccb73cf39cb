"""The project store (SQLAlchemy 2): SQLite by default, PostgreSQL for shared projects."""

from typing import TYPE_CHECKING

from orchestrator.store.errors import CorruptStoreError, NewerSchemaError, NotAStoreError, StoreError
from orchestrator.store.lifecycle import Lifecycle, QueuedAttempt, RunOutput, TransitionRefused
from orchestrator.store.project_store import ProjectStore
from orchestrator.store.records import EventRecord, OutputRecord, RunRecord, StepRecord
from orchestrator.store.runs import InputLink
from orchestrator.store.schema import RunState, StepState, StreamState

if TYPE_CHECKING:  # for type checkers; at run time they load on first use (below)
    from orchestrator.store.set_query import Between, Equals, OneOf
    from orchestrator.store.sets import ItemSet

# Sets need numpy: loaded on first use, so a command that only reads runs (``orch status``) stays quick.
_LAZY = {"Between": "orchestrator.store.set_query", "Equals": "orchestrator.store.set_query",
         "OneOf": "orchestrator.store.set_query", "ItemSet": "orchestrator.store.sets"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator.store' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

__all__ = [
    "Between", "CorruptStoreError", "Equals", "EventRecord", "InputLink", "ItemSet", "Lifecycle", "NewerSchemaError",
    "NotAStoreError", "OneOf", "OutputRecord", "ProjectStore", "QueuedAttempt", "RunOutput", "RunRecord", "RunState",
    "StepRecord", "StepState", "StoreError", "StreamState", "TransitionRefused",
]
