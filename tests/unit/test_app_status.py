"""The application layer's status: a project's runs with step counts, one run's steps, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lifecycle_helpers import put_run, put_step

from orchestrator.app import status
from orchestrator.app.access import OpenProject, open_project
from orchestrator.errors import NotFoundError, UsageError
from orchestrator.project import Project
from orchestrator.scheduler.lock import SchedulerLock
from orchestrator.store import ProjectStore, RunOutput, RunState, StepState


def add_run(store: ProjectStore, name: str, run_state: RunState, steps: dict[str, StepState]) -> int:
    run = store.runs.create("testkit.fanout", {"count": len(steps)}, name=name)
    put_run(store, run.id, RunState.QUEUED if run_state is RunState.QUEUED else RunState.RUNNING)
    ids = store.steps.add(run.id, [{"name": step, "func": "orch_testkit.steps:part_step"} for step in steps])
    for step, state in steps.items():
        extra = {"error": "ValueError: bad\ntraceback"} if state is StepState.FAILED else {}
        put_step(store, ids[step], state, worker="tcp://127.0.0.1:1", pid=4242, **extra)
    if run_state.is_final:
        put_run(store, run.id, run_state, error="step 'b' failed" if run_state is RunState.FAILED else None)
    return run.id


@pytest.fixture
def project(tmp_path: Path, store_url: str) -> Project:
    return Project.create(tmp_path / "proj", store_url=store_url)


@pytest.fixture
def filled(project: Project) -> Project:
    with project.open_store() as store:
        done = add_run(store, "done", RunState.FINISHED, {"a": StepState.FINISHED, "b": StepState.FINISHED})
        store.lifecycle.restart_run(done)  # a run with outputs: finish it again with one registered
        store.lifecycle.start_run(done)
        store.lifecycle.finish_run(done, [RunOutput("total", "Value", value={"total": 6}),
                                          RunOutput("files", "Files", path="out")])
        add_run(store, "broken", RunState.FAILED, {"a": StepState.FINISHED, "b": StepState.FAILED,
                                                   "c": StepState.PENDING})
        add_run(store, "busy", RunState.RUNNING, {"a": StepState.RUNNING, "b": StepState.QUEUED})
        add_run(store, "waiting", RunState.QUEUED, {})
    return project


def test_project_status_counts_every_runs_steps(filled: Project) -> None:
    report = status.project_status(filled.path)
    assert report.project == "proj" and not report.scheduler.running and report.scheduler.pid is None
    runs = {run.name: run for run in report.runs}
    assert [run.name for run in report.runs] == ["done", "broken", "busy", "waiting"]
    assert runs["broken"].step_counts.to_dict() == {"total": 3, "pending": 1, "queued": 0, "running": 0,
                                                    "finished": 1, "failed": 1, "cancelled": 0}
    assert runs["busy"].step_counts.total == 2 and runs["busy"].step_counts[StepState.RUNNING] == 1
    assert runs["waiting"].step_counts.total == 0 and runs["waiting"].duration_s is None
    assert runs["broken"].state == "failed" and runs["broken"].error == "step 'b' failed"
    data = json.loads(json.dumps(report.to_dict()))  # JSON-ready as it is
    assert data["runs"][0]["created_at"].endswith("+00:00") and data["scheduler"] == {"running": False, "pid": None}


def test_run_status_lists_steps_outputs_and_filters_by_state(filled: Project) -> None:
    one = status.run_status(filled.name, "broken")  # by registered name
    run = one.run
    assert (run.name, run.params, run.outputs) == ("broken", {"count": 3}, [])
    assert [step.name for step in run.steps] == ["a", "b", "c"]
    assert str(run.steps[1].error).startswith("ValueError: bad") and run.steps[1].attempt == 1
    assert [s.name for s in status.run_status(filled, "broken", ["failed", StepState.PENDING]).run.steps] == ["b", "c"]
    done = status.run_status(filled.path, "done").to_dict()["run"]
    assert done["outputs"] == [{"name": "total", "type": "Value", "path": None},
                               {"name": "files", "type": "Files", "path": "out"}]


def test_errors_name_what_is_missing_or_wrong(filled: Project, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no run 'brokn' in this project; did you mean broken"):
        status.run_status(filled.path, "brokn")
    with pytest.raises(NotFoundError, match="no project there or by that name"):
        status.project_status(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="step state 'done': not a step state; use one of pending"):
        status.run_status(filled.path, "busy", ["done"])


def test_scheduler_state_comes_from_the_lock(filled: Project) -> None:
    lock = SchedulerLock(filled)
    assert lock.acquire()
    try:
        assert status.project_status(filled.path).scheduler.running
    finally:
        lock.release()
    assert not status.project_status(filled.path).scheduler.running


def test_an_open_handle_is_reused_and_left_open(filled: Project) -> None:
    with open_project(filled.path) as handle:
        assert isinstance(handle, OpenProject)
        assert len(status.project_status(handle).runs) == 4
        assert status.run_status(handle, "busy").run.state == "running"
        assert handle.store.runs.get("done").name == "done"  # still open after the calls


def test_projects_sharing_a_database_see_only_their_runs(tmp_path: Path, pg_url: str) -> None:
    first = Project.create(tmp_path / "first", store_url=pg_url)
    second = Project.create(tmp_path / "second", store_url=pg_url)
    with first.open_store() as store:
        add_run(store, "mine", RunState.RUNNING, {"a": StepState.RUNNING, "b": StepState.QUEUED})
    with second.open_store() as store:
        add_run(store, "theirs", RunState.RUNNING, {"x": StepState.FINISHED})
    (mine,) = status.project_status(first).runs
    (theirs,) = status.project_status(second).runs
    assert (mine.name, mine.step_counts.total) == ("mine", 2)
    assert (theirs.name, theirs.step_counts.total) == ("theirs", 1)
    with pytest.raises(NotFoundError):
        status.run_status(second, "mine")
