"""How many jobs a queue host may have at once: its ``max_jobs``, pilots and batch jobs together.

The pilots' count is set by whoever scales them (at most ``max_pilots``); batch jobs take the
slots left. A batch job always gets at least one slot, so a host whose pilots fill
``max_jobs`` still makes progress on the steps that need their own job.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class JobSlots:
    """A counter of batch jobs bounded by ``limit`` less the pilots (``None``: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.pilots = 0
        self.batch_jobs = 0
        self._changed = threading.Condition()

    def set_pilots(self, count: int) -> None:
        with self._changed:
            self.pilots = count
            self._changed.notify_all()

    def _batch_limit(self) -> int | None:
        return None if self.limit is None else max(1, self.limit - self.pilots)

    def _has_room(self) -> bool:
        limit = self._batch_limit()
        return limit is None or self.batch_jobs < limit

    @contextmanager
    def batch_job(self) -> Iterator[None]:
        """Hold one slot from before the job is submitted until it is settled (blocks while full)."""
        with self._changed:
            self._changed.wait_for(self._has_room)
            self.batch_jobs += 1
        try:
            yield
        finally:
            with self._changed:
                self.batch_jobs -= 1
                self._changed.notify_all()
