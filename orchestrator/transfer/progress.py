"""Progress of a staging call: bytes and files done out of the total, and the current speed.

Worker threads report bytes as they move; the callback the caller gave is called at most
``interval`` apart (and once at the end) with a :class:`Progress` snapshot, from whichever
thread moved the bytes, so it must be quick and thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

SPEED_WINDOW_S = 3.0


@dataclass(frozen=True, slots=True)
class Progress:
    direction: str  # "in" or "out"
    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    speed_bps: float  # over the last few seconds
    current: str | None  # a file being moved now
    finished: bool = False

    @property
    def bytes_left(self) -> int:
        return max(self.bytes_total - self.bytes_done, 0)

    @property
    def eta_s(self) -> float | None:
        return self.bytes_left / self.speed_bps if self.speed_bps > 0 else None


ProgressCallback = Callable[[Progress], None]


class ProgressTracker:
    """Thread-safe counters behind a throttled callback."""

    def __init__(self, direction: str, bytes_total: int, files_total: int,
                 callback: ProgressCallback | None, interval: float = 0.1) -> None:
        self.direction = direction
        self.bytes_total = bytes_total
        self.files_total = files_total
        self.callback = callback
        self.interval = interval
        self.bytes_done = 0
        self.files_done = 0
        self.current: str | None = None
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self._last_call = 0.0

    def add_bytes(self, count: int, current: str | None = None) -> None:
        with self._lock:
            self.bytes_done += count
            if current is not None:
                self.current = current
        self._maybe_call()

    def file_done(self, count: int = 1) -> None:
        with self._lock:
            self.files_done += count
        self._maybe_call()

    def snapshot(self, finished: bool = False) -> Progress:
        with self._lock:
            now = time.monotonic()
            self._samples.append((now, self.bytes_done))
            while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW_S:
                self._samples.popleft()
            first_t, first_b = self._samples[0]
            speed = (self.bytes_done - first_b) / (now - first_t) if now > first_t else 0.0
            return Progress(self.direction, self.bytes_done, self.bytes_total, self.files_done, self.files_total,
                            speed, self.current, finished)

    def _maybe_call(self) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if now - self._last_call < self.interval:
            return
        self._last_call = now
        self.callback(self.snapshot())

    def finish(self) -> None:
        if self.callback is not None:
            self.callback(self.snapshot(finished=True))
