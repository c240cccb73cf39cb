"""The base of the layer's records, and how any of them becomes JSON.

``to_dict()`` gives what ``--json`` prints and what a web server sends: times as ISO 8601 in
UTC (SQLite hands back naive datetimes stored as UTC, PostgreSQL aware ones: both come out
the same), enums as their values, paths as strings, nested records as dicts. This module
imports nothing heavy, so printing JSON costs a command nothing it did not already load.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes (stored as UTC), PostgreSQL aware ones: make both aware."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def elapsed_s(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from start to end (to now while it has not ended); None if it never started."""
    begin = as_utc(start)
    if begin is None:
        return None
    return max(0.0, ((as_utc(end) or datetime.now(UTC)) - begin).total_seconds())


def jsonable(value: Any) -> Any:
    """``value`` as data ``json.dumps`` takes (records, times, enums, paths, numpy values)."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, datetime):
        return as_utc(value).isoformat()  # type: ignore[union-attr]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if hasattr(value, "to_dict"):  # the hosts' configuration records
        return jsonable(value.to_dict())
    if hasattr(value, "tolist"):  # numpy scalars and arrays from sets
        return value.tolist()
    return value


class Record:
    """Base of the layer's records: ``to_dict()`` is every field, made JSON-ready."""

    def to_dict(self) -> dict[str, Any]:
        return {field.name: jsonable(getattr(self, field.name)) for field in fields(self)}  # type: ignore[arg-type]
