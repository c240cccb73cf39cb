"""The project store (SQLAlchemy 2): SQLite by default, PostgreSQL for shared projects."""

from orchestrator.store.errors import CorruptStoreError, NewerSchemaError, NotAStoreError, StoreError
from orchestrator.store.lifecycle import Lifecycle, QueuedAttempt, RunOutput, TransitionRefused
from orchestrator.store.project_store import ProjectStore
from orchestrator.store.records import EventRecord, OutputRecord, RunRecord, StepRecord
from orchestrator.store.runs import InputLink
from orchestrator.store.schema import RunState, StepState, StreamState
from orchestrator.store.set_query import Between, Equals, OneOf
from orchestrator.store.sets import ItemSet

__all__ = [
    "Between", "CorruptStoreError", "Equals", "EventRecord", "InputLink", "ItemSet", "Lifecycle", "NewerSchemaError",
    "NotAStoreError", "OneOf", "OutputRecord", "ProjectStore", "QueuedAttempt", "RunOutput", "RunRecord", "RunState",
    "StepRecord", "StepState", "StoreError", "StreamState", "TransitionRefused",
]
