"""The application layer's runs: submit (params, name, host), workflows, restart, cancel, wait, outcome.

No scheduler runs here (``start_scheduler=False``): the states come from the store's lifecycle.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lifecycle_helpers import put_run, put_step

from orchestrator.app import runs
from orchestrator.app.errors import http_status
from orchestrator.app.records import RunInfo
from orchestrator.app.runs import RunProgress
from orchestrator.errors import NotFoundError, OrchestratorError, UsageError
from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.store import RunState, StepState, TransitionRefused
from orchestrator.worker.processes import process_start

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workflow-testkit.json"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


def stored_runs(project: Project) -> list[str]:
    with project.open_store() as store:
        return [run.name for run in store.runs.list()]


def test_submit_queues_a_run_with_coerced_params(project: Project) -> None:
    run = runs.submit_run(project.path, "testkit.fanout", {"count": "3"}, name="fan", start_scheduler=False)
    assert isinstance(run, RunInfo)
    assert (run.name, run.protocol, run.state, run.params, run.host) == ("fan", "testkit.fanout", "queued",
                                                                         {"count": 3}, "local")
    assert project.run_dir("fan").is_dir()
    second = runs.submit_run(project.name, "testkit.noop", start_scheduler=False, registry=discover())
    assert second.name == f"noop-{second.id}" and second.params == {"count": 1}  # default name and params
    assert not (project.path / "scheduler.lock").exists()


@pytest.mark.parametrize(("protocol", "params", "name", "host", "status", "message"), [
    ("testkit.noop", {"count": "x"}, None, None, 400, "param 'count': expected an integer, got 'x'"),
    ("testkit.noop", {"cuont": 1}, None, None, 400, "did you mean 'count'"),
    ("testkit.nop", {}, None, None, 404, "no protocol 'testkit.nop' (did you mean 'testkit.noop'?)"),
    ("testkit.chain", {"source": "nope.files"}, None, None, 404, "no run 'nope'"),
    ("testkit.noop", {}, "bad/name", None, 400, "contains a path separator"),
    ("testkit.noop", {}, None, "elsewhere", 404, "unknown host 'elsewhere'"),
])  # fmt: skip
def test_submit_errors_name_the_param_and_leave_nothing(project: Project, protocol: str, params: dict[str, object],
                                                        name: str | None, host: str | None, status: int,
                                                        message: str) -> None:
    with pytest.raises(OrchestratorError) as caught:
        runs.submit_run(project.path, protocol, params, name=name, host=host, start_scheduler=False)
    assert message in str(caught.value)
    assert http_status(caught.value) == status  # what a web front end answers
    assert stored_runs(project) == []


def test_a_pointer_to_a_missing_output_is_refused(project: Project) -> None:
    runs.submit_run(project.path, "testkit.produce", name="produce", start_scheduler=False)
    with pytest.raises(UsageError, match="run produce \\(testkit.produce\\) has no output 'nothing'"):
        runs.submit_run(project.path, "testkit.chain", {"source": "produce.nothing"}, start_scheduler=False)


def test_submit_a_workflow_from_a_file_and_from_a_document(project: Project) -> None:
    created = runs.submit_workflow(project.path, EXAMPLE, start_scheduler=False)
    assert [(run.name, run.state) for run in created] == [("produce", "queued"), ("derive", "queued"),
                                                          ("fanout", "queued")]
    document = {"runs": [{"name": "again", "protocol": "testkit.chain", "params": {"source": "produce.files"}}]}
    (again,) = runs.submit_workflow(project.path, document, start_scheduler=False)
    assert again.params == {"source": "produce.files", "out": "derived.txt"}
    with pytest.raises(UsageError, match="mine.json: run 1 \\('again'\\): a run with this name already exists"):
        runs.submit_workflow(project.path, document, start_scheduler=False, source_name="mine.json")
    with pytest.raises(UsageError, match="no such workflow file"):
        runs.submit_workflow(project.path, project.path / "none.json", start_scheduler=False)
    assert stored_runs(project) == ["produce", "derive", "fanout", "again"]


def test_restart_requeues_an_ended_run_and_refuses_a_live_one(project: Project) -> None:
    run = runs.submit_run(project.path, "testkit.noop", name="once", start_scheduler=False)
    with pytest.raises(TransitionRefused, match="run once is queued: it is already queued or running"):
        runs.restart_run(project.path, "once", start_scheduler=False)
    with project.open_store() as store:
        put_run(store, run.id, RunState.FAILED, error="boom")
    again = runs.restart_run(project.path, run.id, start_scheduler=False)
    assert again.state == "queued" and again.error is None
    with pytest.raises(NotFoundError, match="no run 'twice'"):
        runs.restart_run(project.path, "twice", start_scheduler=False)


def test_cancel_stops_the_steps_and_kills_a_running_process(project: Project) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        run = runs.submit_run(project.path, "testkit.fanout", {"count": 2}, name="busy", start_scheduler=False)
        with project.open_store() as store:
            put_run(store, run.id, RunState.RUNNING)
            ids = store.steps.add(run.id, [{"name": n, "func": "orch_testkit.steps:part_step"} for n in "abc"])
            put_step(store, ids["a"], StepState.FINISHED)
            put_step(store, ids["b"], StepState.RUNNING, pid=sleeper.pid, proc_start=process_start(sleeper.pid))
        outcome = runs.cancel_run(project.path, "busy")
        assert (outcome.run_id, outcome.run_name, outcome.steps_cancelled) == (run.id, "busy", ["b", "c"])
        assert outcome.killed_pids == [sleeper.pid]
        assert outcome.to_dict() == {"run": {"id": run.id, "name": "busy"}, "state": "cancelled",
                                     "steps_cancelled": ["b", "c"], "killed_pids": [sleeper.pid]}
        assert sleeper.wait(timeout=10) is not None
        with pytest.raises(TransitionRefused, match="run busy is already cancelled"):
            runs.cancel_run(project.path, "busy")
        with pytest.raises(NotFoundError):
            runs.cancel_run(project.path, "idle")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_wait_reports_progress_and_returns_at_the_timeout(project: Project) -> None:
    first = runs.submit_run(project.path, "testkit.noop", name="first", start_scheduler=False)
    second = runs.submit_run(project.path, "testkit.noop", name="second", start_scheduler=False)
    with project.open_store() as store:
        put_run(store, first.id, RunState.FINISHED)
        (step,) = store.steps.add(second.id, [{"name": "s", "func": "orch_testkit.steps:noop_step"}]).values()
        put_step(store, step, StepState.QUEUED)
    seen: list[list[RunProgress]] = []
    ended = runs.wait_for_runs(project.path, ["first", second.id], timeout_s=0.3, on_progress=seen.append,
                               restart_scheduler=False, poll_s=0.05)
    assert [run.state for run in ended] == ["finished", "queued"]
    assert len(seen) >= 2 and [item.run.name for item in seen[-1]] == ["first", "second"]
    assert seen[-1][1].steps[StepState.QUEUED] == 1 and seen[-1][1].steps.total == 1
    assert runs.outcome(ended) is None
    assert runs.wait_for_run(project.path, "first", timeout_s=0).state == "finished"  # ended: no waiting
    with pytest.raises(UsageError, match="timeout -1 s: must be 0 or more"):
        runs.wait_for_runs(project.path, ["first"], timeout_s=-1)
    with pytest.raises(NotFoundError):
        runs.wait_for_runs(project.path, ["third"], timeout_s=0)


@pytest.mark.parametrize(("states", "expected"), [
    ([RunState.FINISHED], RunState.FINISHED),
    ([RunState.FINISHED, RunState.CANCELLED], RunState.CANCELLED),
    ([RunState.CANCELLED, RunState.FAILED, RunState.FINISHED], RunState.FAILED),
    ([RunState.FAILED, RunState.RUNNING], None),
])  # fmt: skip
def test_outcome_of_several_runs(project: Project, states: list[RunState], expected: RunState | None) -> None:
    with project.open_store() as store:
        records = []
        for state in states:
            run = store.runs.create("testkit.noop", {})
            put_run(store, run.id, state)
            records.append(RunInfo.of(store.runs.get(run.id)))
    assert runs.outcome(records) == expected
