"""Waiting in tests for a condition, never for a fixed time: what does not flake on a loaded machine.

A test that sleeps N seconds and then asserts fails when the machine is slow (the thing took
longer) or passes when the behaviour is wrong (the thing would have happened a bit later).
Poll for the condition instead, with a deadline far beyond any normal delay; and to show that
something does *not* happen (a thread stays blocked), wait until it has provably reached the
point where it blocks (:class:`CountingCondition`), then look.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DEADLINE_S = 60.0


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = DEADLINE_S,
               poll_s: float = 0.01) -> None:
    """Return as soon as ``condition()`` is true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(poll_s)


class CountingCondition(threading.Condition):
    """A condition that counts the threads waiting on it. A thread counted here checked its
    predicate under the lock and found it false: it is blocked until someone notifies, so
    "it did not get in" needs no guess of how long it would take to get in."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting += 1  # under the lock, as wait() requires
        try:
            return super().wait(timeout)
        finally:
            self.waiting -= 1
