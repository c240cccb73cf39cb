"""The workers' fast path writes values the generic store layer reads back unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.store import ProjectStore, StepState
from orchestrator.store.step_writer import StepWriter


def test_fast_transitions_round_trip_through_the_store(store_url: str) -> None:
    with ProjectStore.create(store_url, "p") as store:
        run = store.runs.create("testkit.noop")
        step_id = store.steps.add(run.id, [{"name": "s", "func": "m:f"}])["s"]
        writer = StepWriter(store.engine)
        started = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        assert writer.transition(step_id, run.id, StepState.RUNNING, (StepState.PENDING,),
                                 worker="tcp://w", pid=77, host="local", gpus=[0, 1], started_at=started,
                                 attempt=1)
        assert not writer.transition(step_id, run.id, StepState.RUNNING, (StepState.PENDING,), pid=1)
        assert writer.transition(step_id, run.id, StepState.FINISHED, (StepState.RUNNING,), message="done",
                                 duration_s=0.25, peak_memory_mb=12.5, result={"total": 3, "x": [1.5]},
                                 finished_at=started)
        writer.close()
        step = store.steps.get(step_id)
        assert (step.state, step.worker, step.pid, step.gpus, step.attempt) == ("finished", "tcp://w", 77, [0, 1], 1)
        assert step.result == {"total": 3, "x": [1.5]} and step.duration_s == 0.25
        assert step.started_at.replace(tzinfo=None) == started.replace(tzinfo=None) or \
            step.started_at == started
        events = store.events.list(run_id=run.id)
        assert [(e.state, e.message) for e in events if e.kind == "step"] == [("running", None), ("finished", "done")]
        assert events[-1].time is not None and events[-2].host == "local"
