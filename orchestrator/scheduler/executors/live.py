"""The objects that dask tasks running inside the scheduler's own process look up by key.

Some tasks of an executor run on a thread worker inside the scheduler's process (the task that
waits on a batch job, the task that stages a step's files to an SSH host and records its
outcome). Such a task is shipped to dask as plain data, so it cannot carry the objects it
needs (the host's batch queue, its staging agent, the open store): it names them by a key and
finds them here. This is the one place such objects live; an executor registers what its tasks
need when it starts and removes it when it closes.

A task that runs in another process (a pilot worker, a remote worker) never looks anything up
here: what it needs travels in its payload.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

from orchestrator.errors import OrchestratorError

T = TypeVar("T")

_objects: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


class NotRegistered(OrchestratorError):
    """A task asked for an object that no executor of this process registered."""


def register(kind: str, key: str, obj: Any) -> str:
    """Make ``obj`` reachable as (``kind``, ``key``) by tasks of this process; returns ``key``."""
    with _lock:
        _objects[(kind, key)] = obj
    return key


def unregister(kind: str, key: str) -> None:
    with _lock:
        _objects.pop((kind, key), None)


def lookup(kind: str, key: str, expected: type[T]) -> T:
    """The object registered as (``kind``, ``key``); :class:`NotRegistered` names what is missing."""
    with _lock:
        obj = _objects.get((kind, key))
    if obj is None:
        raise NotRegistered(f"no {kind} registered as {key!r} in this process: tasks that use it must run on "
                            "a worker inside the scheduler's process")
    if not isinstance(obj, expected):
        raise NotRegistered(f"{kind} {key!r} is a {type(obj).__name__}, not a {expected.__name__}")
    return obj
