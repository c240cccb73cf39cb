"""JobSlots: a host's max_jobs shared by its pilots and its batch jobs."""

from __future__ import annotations

import threading

from waiting import CountingCondition, wait_until

from orchestrator.hosts.queues.job_slots import JobSlots


def _hold_in_thread(slots: JobSlots, release: threading.Event, entered: list[int]) -> threading.Thread:
    def hold() -> None:
        with slots.batch_job():
            entered.append(1)
            release.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


def test_batch_jobs_wait_while_the_limit_less_pilots_is_used() -> None:
    slots = JobSlots(3)
    slots._changed = changed = CountingCondition()
    slots.set_pilots(1)
    release = threading.Event()
    entered: list[int] = []
    threads = [_hold_in_thread(slots, release, entered) for _ in range(3)]
    wait_until(lambda: len(entered) == 2 and changed.waiting == 1, "two jobs in, the third waiting for room")
    with changed:  # nothing notifies the waiting thread until a slot frees: this holds for as long as we look
        assert len(entered) == 2 and slots.batch_jobs == 2 and changed.waiting == 1
    slots.set_pilots(0)  # a pilot gone: its slot goes to the waiting job
    wait_until(lambda: len(entered) == 3, "the waiting job to take the pilot's slot")
    assert slots.batch_jobs == 3 and changed.waiting == 0
    release.set()
    for thread in threads:
        thread.join(30)
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
