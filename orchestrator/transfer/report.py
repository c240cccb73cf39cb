"""What a staging call returns (:class:`StageReport`), and its state while it runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.transfer.ledger import Journal
from orchestrator.transfer.progress import ProgressTracker


@dataclass(frozen=True, eq=False)
class StageReport(Mapping[Any, Any]):
    """Source path -> destination path of every file asked for, with what it cost."""

    direction: str
    paths: dict[Any, Any]
    sent: tuple[str, ...] = ()
    skipped: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0

    def __getitem__(self, key: Any) -> Any:
        return self.paths[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class StagingJob:
    """One staging call in progress: its journal, counters and the errors it met."""

    journal: Journal
    tracker: ProgressTracker
    record_ids: dict[str, int]  # remote path -> transfers row
    errors: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)  # streams finish files from several threads
