"""JobSlots: a host's max_jobs shared by its pilots and its batch jobs."""

from __future__ import annotations

import threading
import time

from orchestrator.hosts.queues.job_slots import JobSlots


def _hold_in_thread(slots: JobSlots, release: threading.Event, entered: list[int]) -> threading.Thread:
    def hold() -> None:
        with slots.batch_job():
            entered.append(1)
            release.wait(10)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


def _settle(entered: list[int], expected: int, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(entered) < expected and time.monotonic() < deadline:
        time.sleep(0.01)


def test_batch_jobs_wait_while_the_limit_less_pilots_is_used() -> None:
    slots = JobSlots(3)
    slots.set_pilots(1)
    release, entered = threading.Event(), []
    threads = [_hold_in_thread(slots, release, entered) for _ in range(3)]
    _settle(entered, 2)
    time.sleep(0.2)  # the third would have entered by now if it could
    assert len(entered) == 2 and slots.batch_jobs == 2
    slots.set_pilots(0)  # a pilot gone: its slot goes to the waiting job
    _settle(entered, 3)
    assert len(entered) == 3
    release.set()
    for thread in threads:
        thread.join(5)
    assert slots.batch_jobs == 0


def test_one_batch_job_always_runs_even_when_pilots_fill_the_host() -> None:
    slots = JobSlots(2)
    slots.set_pilots(2)
    with slots.batch_job():
        assert slots.batch_jobs == 1


def test_no_limit_never_blocks() -> None:
    slots = JobSlots(None)
    with slots.batch_job(), slots.batch_job(), slots.batch_job():
        assert slots.batch_jobs == 3
    assert slots.batch_jobs == 0
