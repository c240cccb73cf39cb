"""The workers' fast path writes values the generic store layer reads back unchanged, under the lifecycle's rules."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.store import ProjectStore, QueuedAttempt
from orchestrator.store.step_writer import StepWriter


def test_fast_transitions_round_trip_through_the_store(store_url: str) -> None:
    with ProjectStore.create(store_url, "p") as store:
        run = store.runs.create("testkit.noop")
        step_id = store.steps.add(run.id, [{"name": "s", "func": "m:f"}])["s"]
        writer = StepWriter(store.engine)
        started = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        assert not writer.start(step_id, run.id, 1, pid=1)  # not queued: nothing to start
        assert store.lifecycle.queue_steps([QueuedAttempt(step_id, 1, "local")]) == [step_id]
        assert writer.start(step_id, run.id, 1, worker="tcp://w", pid=77, proc_start=1234.5, host="local",
                            gpus=[0, 1], started_at=started)
        assert not writer.start(step_id, run.id, 1, pid=1)  # started already
        assert not writer.finish(step_id, run.id, 2, result={"x": 0})  # another attempt's end
        assert writer.finish(step_id, run.id, 1, duration_s=0.25, peak_memory_mb=12.5,
                             result={"total": 3, "x": [1.5]}, finished_at=started)
        assert writer.state(step_id) is not None and writer.state(step_id)[1] == 1
        writer.close()
        step = store.steps.get(step_id)
        assert (step.state, step.worker, step.pid, step.proc_start, step.gpus, step.attempt) == \
            ("finished", "tcp://w", 77, 1234.5, [0, 1], 1)
        assert step.result == {"total": 3, "x": [1.5]} and step.duration_s == 0.25
        assert step.started_at.replace(tzinfo=None) == started.replace(tzinfo=None) or \
            step.started_at == started
        events = store.events.list(run_id=run.id)
        assert [e.state for e in events if e.kind == "step"] == ["queued", "running", "finished"]
        assert events[-1].time is not None and events[-2].host == "local"


def test_a_failure_counts_against_the_retry_budget_in_the_store(store_url: str) -> None:
    with ProjectStore.create(store_url, "p") as store:
        run = store.runs.create("testkit.noop")
        step_id = store.steps.add(run.id, [{"name": "s", "func": "m:f", "max_retries": 2}])["s"]
        writer = StepWriter(store.engine)
        for attempt in (1, 2):
            assert store.lifecycle.queue_steps([QueuedAttempt(step_id, attempt, "local")]) == [step_id]
            started = {"worker": "w", "pid": 5, "started_at": datetime.now(UTC)}
            assert writer.fail(step_id, run.id, attempt, "ValueError: no", started=started, error="ValueError: no")
        writer.close()
        step = store.steps.get(step_id)
        assert (step.state, step.attempt, step.failed_attempts) == ("failed", 2, 2)
        events = [(e.state, e.message) for e in store.events.list(run_id=run.id) if e.kind == "step"]
        assert events[-2:] == [("running", None), ("failed", "ValueError: no")]
