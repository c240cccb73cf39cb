"""One run lifecycle: allowed sources, attempt fences, the retry budget in the store, ends that commit whole."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from orchestrator.protocol.sets import PendingSet
from orchestrator.store import (
    ProjectStore,
    QueuedAttempt,
    RunOutput,
    RunState,
    StepState,
    TransitionRefused,
    migrations,
)
from orchestrator.store.lifecycle import RUN_RULES, STEP_RULES, RunChange, StepChange


@pytest.fixture
def store(store_url: str) -> ProjectStore:
    created = ProjectStore.create(store_url, "proj")
    yield created
    created.close()


def new_step(store: ProjectStore, max_retries: int = 2) -> tuple[int, int]:
    run = store.runs.create("testkit.noop")
    store.lifecycle.queue_run(run.id)
    store.lifecycle.start_run(run.id)
    return run.id, store.steps.add(run.id, [{"name": "s", "func": "m:f", "max_retries": max_retries}])["s"]


def test_every_transition_names_where_it_may_come_from() -> None:
    assert set(STEP_RULES) == set(StepChange) and set(RUN_RULES) == set(RunChange)
    assert StepState.FINISHED not in STEP_RULES[StepChange.QUEUE].sources  # a retry never overwrites FINISHED
    assert all(STEP_RULES[c].fenced for c in (StepChange.START, StepChange.FINISH, StepChange.FAIL))
    assert all(not RunState(s).is_final for s in RUN_RULES[RunChange.CANCEL].sources)


def test_run_transitions_refuse_wrong_states_with_clear_messages(store: ProjectStore) -> None:
    run = store.runs.create("testkit.noop", name="r1")
    store.lifecycle.queue_run(run.id)
    with pytest.raises(TransitionRefused, match="run r1 is queued: cannot queue it") as info:
        store.lifecycle.queue_run(run.id)
    assert info.value.exit_code == 2
    assert store.lifecycle.start_run(run.id) and not store.lifecycle.start_run(run.id)
    assert not store.lifecycle.finish_run(store.runs.create("testkit.noop").id, [])  # never started
    assert store.lifecycle.finish_run(run.id, [RunOutput("n", "Value", value={"value": 3})])
    assert store.outputs.get(run.id, "n").value == {"value": 3}
    with pytest.raises(TransitionRefused, match="run r1 is already finished"):
        store.lifecycle.cancel_run(run.id)
    restarted = store.lifecycle.restart_run(run.id)
    assert restarted.run_state is RunState.QUEUED and restarted.error is None
    with pytest.raises(TransitionRefused, match="already queued or running"):
        store.lifecycle.restart_run(run.id)


def test_cancel_ends_the_run_and_its_steps_in_one_go(store: ProjectStore) -> None:
    run_id, step_id = new_step(store)
    other = store.steps.add(run_id, [{"name": "t", "func": "m:f"}])["t"]
    store.lifecycle.queue_steps([QueuedAttempt(step_id, 1, "local")])
    store.lifecycle.start_step(step_id, 1, pid=12, proc_start=5.0, worker="w")
    active = store.lifecycle.cancel_run(run_id, "cancelled by user")
    assert [(s.id, s.pid, s.proc_start) for s in active] == [(step_id, 12, 5.0)]
    assert store.runs.get(run_id).run_state is RunState.CANCELLED
    assert {s.id: s.state for s in store.steps.list(run_id)} == {step_id: "cancelled", other: "cancelled"}
    assert not store.lifecycle.finish_step(step_id, 1, {"late": True})  # the worker's late end is refused


def test_the_retry_budget_lives_in_the_store_and_a_restart_gives_it_back(store: ProjectStore) -> None:
    run_id, step_id = new_step(store, max_retries=1)
    for attempt in (1, 2):
        assert store.lifecycle.queue_steps([QueuedAttempt(step_id, attempt, "local")]) == [step_id]
        assert store.lifecycle.fail_step(step_id, attempt, f"boom {attempt}")
    step = store.steps.get(step_id)
    assert (step.attempt, step.failed_attempts, step.max_retries) == (2, 2, 1)  # a new scheduler reads this
    assert not store.lifecycle.queue_steps([QueuedAttempt(step_id, 2, "local")])  # attempt numbers never repeat
    store.lifecycle.fail_run(run_id, "step 's' failed")
    store.lifecycle.restart_run(run_id)
    assert store.steps.get(step_id).failed_attempts == 0


def test_requeue_after_a_crash_keeps_the_attempt_count_and_the_failures(store: ProjectStore) -> None:
    _run_id, step_id = new_step(store)
    store.lifecycle.queue_steps([QueuedAttempt(step_id, 1, "local")])
    store.lifecycle.fail_step(step_id, 1, "boom")
    store.lifecycle.queue_steps([QueuedAttempt(step_id, 2, "local")])
    store.lifecycle.start_step(step_id, 2, pid=99, worker="w")
    assert store.lifecycle.requeue_steps([(step_id, 1)], "stale") == []  # fenced: attempt 2 is in flight
    assert store.lifecycle.requeue_steps([(step_id, 2)], "scheduler died") == [step_id]
    step = store.steps.get(step_id)
    assert (step.state, step.attempt, step.failed_attempts, step.pid) == ("pending", 2, 1, None)
    assert store.lifecycle.queue_steps([QueuedAttempt(step_id, 3, "local")]) == [step_id]


def test_a_step_end_and_its_sets_commit_together(store: ProjectStore) -> None:
    run_id, step_id = new_step(store)
    store.lifecycle.queue_steps([QueuedAttempt(step_id, 1, "local")])
    pending = [PendingSet("mics", "Micrograph", {"defocus_u": np.array([1.0, 2.0])}),
               PendingSet("parts", "Particle", {"defocus_u": np.array([5.0])}, {"source": {"$set": "mics"}})]
    assert not store.lifecycle.finish_step(step_id, 2, {"set_id": {"$set": "mics"}}, pending)  # wrong attempt
    assert store.list_sets(run_id) == []  # nothing half made
    assert store.lifecycle.finish_step(step_id, 1, {"out": {"set_id": {"$set": "parts"}}}, pending)
    sets = {s["name"]: s for s in store.list_sets(run_id)}
    assert sets["mics"]["size"] == 2 and sets["parts"]["stream_state"] == "closed"
    assert store.steps.get(step_id).result == {"out": {"set_id": sets["parts"]["id"]}}
    assert store.get_set(sets["parts"]["id"]).properties == {"source": sets["mics"]["id"]}
    # a re-run of the step replaces its sets instead of leaving the old ones behind
    store.lifecycle.reset_steps({step_id: ({}, "input changed")})
    store.lifecycle.queue_steps([QueuedAttempt(step_id, 2, "local")])
    assert store.lifecycle.finish_step(step_id, 2, None, [PendingSet("mics", "Micrograph", {})])
    assert [(s["name"], s["size"]) for s in store.list_sets(run_id)] == [("mics", 0)]


def test_fields_that_belong_to_the_lifecycle_cannot_be_set_around_it(store: ProjectStore) -> None:
    _run_id, step_id = new_step(store)
    with pytest.raises(ValueError, match="state change through the lifecycle"):
        store.steps.update(step_id, state="finished")
    with pytest.raises(ValueError, match="changes no state"):
        store.lifecycle.annotate_step(step_id, 0, state="finished")


def test_a_store_of_schema_1_is_upgraded(store_url: str) -> None:
    """The columns and table this issue added arrive in an older store on open, with their defaults."""
    with ProjectStore.create(store_url, "proj") as store:
        run = store.runs.create("testkit.noop")
        store.steps.add(run.id, [{"name": "s", "func": "m:f"}])
        with store.engine.begin() as conn:
            for statement in ("ALTER TABLE steps DROP COLUMN failed_attempts",
                              "ALTER TABLE steps DROP COLUMN proc_start", "ALTER TABLE sets DROP COLUMN step_id",
                              "DROP TABLE host_health", "DROP TABLE run_provenance", "DROP TABLE host_programs",
                              "UPDATE schema_info SET value = '1' WHERE key = 'schema_version'"):
                conn.execute(text(statement))
    with ProjectStore.open(store_url) as store:
        with store.engine.connect() as conn:
            assert migrations.stored_version(conn, "x") == migrations.SCHEMA_VERSION
        step = store.steps.list(store.runs.list()[0].id)[0]
        assert step.failed_attempts == 0 and step.proc_start is None
        assert store.provenance.get(step.run_id) is None  # the table is there, empty for old runs
        assert store.host_programs.get("ci-slurm") == {}
        store.host_programs.put("ci-slurm", {"relion_refine": {"path": "/opt/relion/bin/relion_refine",
                                                               "version": "RELION version: 3.1.4"}})
        store.host_programs.put("ci-slurm", {"relion_refine": {"path": "/opt/relion/bin/relion_refine",
                                                               "version": "RELION version: 4.0.1"}})
        (found,) = store.host_programs.get("ci-slurm").values()
        assert found["version"] == "RELION version: 4.0.1"  # the newest answer replaces the older


def test_host_health_keeps_the_state_since_it_changed(store: ProjectStore) -> None:
    from orchestrator.store.host_health import HostState

    assert not store.hosts.report("cluster", HostState.OK)  # healthy from the start: not news
    assert store.hosts.report("cluster", HostState.UNREACHABLE, "squeue: Unable to contact slurm controller")
    first = store.hosts.get("cluster")
    assert not store.hosts.report("cluster", HostState.UNREACHABLE, "squeue: still down")
    again = store.hosts.get("cluster")
    assert again is not None and first is not None
    assert (again.state, again.since, again.message) == (HostState.UNREACHABLE, first.since, "squeue: still down")
    assert again.checked_at >= first.checked_at
    assert store.hosts.report("cluster", HostState.OK) and store.hosts.get("cluster").state is HostState.OK
    assert [h.host for h in store.hosts.list()] == ["cluster"]
