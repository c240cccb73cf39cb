"""Records of the application layer: JSON-ready ``to_dict`` (UTC times, enums, paths, nested records)."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from orchestrator.app.records import StepCounts
from orchestrator.app.serialize import Record, as_utc, elapsed_s, jsonable


class Colour(enum.Enum):
    RED = "red"


@dataclass(frozen=True)
class Inner(Record):
    when: datetime
    colour: Colour


@dataclass(frozen=True)
class Outer(Record):
    path: Path
    inner: list[Inner]
    table: dict[str, object]


def test_to_dict_is_json_ready_with_utc_times() -> None:
    naive = datetime(2025, 3, 1, 12, 0, 0)  # SQLite's: stored as UTC, read back naive
    paris = datetime(2025, 3, 1, 13, 0, 0, tzinfo=timezone(timedelta(hours=1)))  # PostgreSQL's: aware
    record = Outer(Path("/p/q"), [Inner(naive, Colour.RED), Inner(paris, Colour.RED)],
                   {"n": np.int64(3), "xs": np.arange(2), "none": None})
    data = json.loads(json.dumps(record.to_dict()))
    assert data == {"path": "/p/q", "table": {"n": 3, "xs": [0, 1], "none": None},
                    "inner": [{"when": "2025-03-01T12:00:00+00:00", "colour": "red"},
                              {"when": "2025-03-01T13:00:00+01:00", "colour": "red"}]}
    assert jsonable((1, "a")) == [1, "a"]


def test_times_and_counts() -> None:
    start = datetime(2025, 3, 1, 12, 0, 0)
    assert as_utc(start) == datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC) and as_utc(None) is None
    assert elapsed_s(start, start + timedelta(seconds=90)) == 90.0 and elapsed_s(None, None) is None
    assert (elapsed_s(datetime.now(UTC) - timedelta(seconds=5), None) or 0) >= 5  # still going: until now
    counts = StepCounts({"finished": 3, "failed": 1})
    assert (counts.total, counts.finished, counts["running"]) == (4, 3, 0)
    assert counts.to_dict() == {"total": 4, "pending": 0, "queued": 0, "running": 0, "finished": 3, "failed": 1,
                                "cancelled": 0}
