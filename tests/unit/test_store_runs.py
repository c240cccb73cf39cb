"""Runs, steps, outputs, provenance and the append-only event log, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from lifecycle_helpers import put_run
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from orchestrator.errors import NotFoundError, UsageError
from orchestrator.store import InputLink, ProjectStore, QueuedAttempt, RunOutput, RunState, StepState


@pytest.fixture
def store(store_url: str) -> ProjectStore:
    created = ProjectStore.create(store_url, "proj")
    yield created
    created.close()


def test_run_lifecycle_is_recorded_with_events(store: ProjectStore) -> None:
    run = store.runs.create("testkit.noop", {"count": 2})
    assert run.name == f"noop-{run.id}"
    assert run.run_state is RunState.CREATED
    store.lifecycle.queue_run(run.id)
    assert store.lifecycle.start_run(run.id)
    assert store.lifecycle.finish_run(run.id, [])
    done = store.runs.get(run.name)
    assert done.run_state is RunState.FINISHED
    assert done.started_at is not None and done.finished_at is not None
    states = [e.state for e in store.events.list(run_id=run.id)]
    assert states == ["created", "queued", "running", "finished"]


def test_steps_transitions_and_counts(store: ProjectStore) -> None:
    run = store.runs.create("testkit.fanout")
    ids = store.steps.add(run.id, [{"name": f"s{i}", "func": "m:f", "args": {"i": i}, "deps": []}
                                   for i in range(3)] + [{"name": "gather", "func": "m:g",
                                                          "deps": ["s0", "s1", "s2"]}])
    assert set(ids) == {"s0", "s1", "s2", "gather"}
    assert store.lifecycle.queue_steps([QueuedAttempt(ids["s0"], 1, "local"), QueuedAttempt(ids["s1"], 1, "local")]) \
        == [ids["s0"], ids["s1"]]
    assert store.lifecycle.start_step(ids["s0"], 1, worker="tcp://w1", pid=42, host="local")
    assert store.lifecycle.finish_step(ids["s0"], 1, {"value": 3}, duration_s=1.5, peak_memory_mb=12.0)
    assert store.steps.counts(run.id) == {"finished": 1, "queued": 1, "pending": 2}
    step = store.steps.get(ids["s0"])
    assert (step.worker, step.pid, step.duration_s, step.result) == ("tcp://w1", 42, 1.5, {"value": 3})
    assert store.steps.list(run.id, [StepState.PENDING])[-1].deps == ["s0", "s1", "s2"]
    step_events = [e for e in store.events.list(run_id=run.id) if e.kind == "step"]
    assert [(e.step_id, e.state) for e in step_events] == [
        (ids["s0"], "queued"), (ids["s1"], "queued"), (ids["s0"], "running"), (ids["s0"], "finished")]
    assert step_events[2].host == "local"


def test_outputs_and_provenance(store: ProjectStore) -> None:
    producer = store.runs.create("emtools.extract")
    particles = store.create_set("particles", "Particle", run_id=producer.id)
    put_run(store, producer.id, RunState.RUNNING)
    assert store.lifecycle.finish_run(producer.id, [RunOutput("particles", "SetOfParticles", set_id=particles.id)])
    consumer = store.runs.create("emtools.refine3d", {"particles": f"{producer.id}.particles"},
                                 inputs=[InputLink("particles", producer.id, "particles")])
    assert store.runs.inputs(consumer.id) == [InputLink("particles", producer.id, "particles")]
    assert store.runs.consumers(producer.id) == [consumer.id]
    out = store.outputs.get(producer.id, "particles")
    assert out.set_id == particles.id and out.type_name == "SetOfParticles"
    with pytest.raises(NotFoundError, match="has no output 'volume'; it has: particles"):
        store.outputs.get(producer.id, "volume")
    # a re-run's end replaces its outputs
    store.lifecycle.restart_run(producer.id)
    put_run(store, producer.id, RunState.RUNNING)
    store.lifecycle.finish_run(producer.id, [RunOutput("particles", "SetOfParticles", value={"note": "rerun"})])
    assert [o.value for o in store.outputs.list(producer.id)] == [{"note": "rerun"}]


def test_events_are_append_only(store: ProjectStore) -> None:
    store.events.append("note", message="hello")
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("UPDATE events SET message = 'changed'"))
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("DELETE FROM events"))
    assert [e.message for e in store.events.list()] == ["hello"]


def test_unknown_run_suggests_close_names(store: ProjectStore) -> None:
    store.runs.create("emtools.motioncorr", name="motioncorr")
    with pytest.raises(NotFoundError, match="did you mean motioncorr"):
        store.runs.get("motioncor")
    with pytest.raises(UsageError, match="already exists"):
        store.runs.create("emtools.motioncorr", name="motioncorr")


def test_reopen_sees_everything(store_url: str) -> None:
    with ProjectStore.create(store_url, "proj") as store:
        run = store.runs.create("testkit.noop")
        store.add_user("alice", "Alice Liddell")
    with ProjectStore.open(store_url) as reopened:
        assert reopened.runs.get(run.id).protocol == "testkit.noop"
        assert [u["name"] for u in reopened.users()] == ["alice"]
