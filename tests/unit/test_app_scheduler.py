"""The application layer's scheduler controls, without starting one: state, stop, serve refused."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from orchestrator.app import scheduler
from orchestrator.app.errors import SchedulerBusyError, http_status
from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.project import Project
from orchestrator.scheduler.lock import LOCK_FILE, SchedulerLock


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


def test_state_and_stop_when_none_runs(project: Project) -> None:
    state = scheduler.scheduler_state(project.path)
    assert (state.running, state.pid) == (False, None) and state.to_dict() == {"running": False, "pid": None}
    stop = scheduler.stop_scheduler(project.path, timeout_s=1)
    assert (stop.was_running, stop.stopped, stop.pid) == (False, True, None)


def test_a_held_lock_is_a_running_scheduler_and_refuses_a_second(project: Project) -> None:
    lock = SchedulerLock(project)
    assert lock.acquire()  # this process plays the scheduler
    try:
        assert scheduler.scheduler_state(project.name) == scheduler.SchedulerState(True, os.getpid())
        start = scheduler.start_scheduler(project.path)
        assert start.already_running and start.pid == os.getpid() and start.log == project.path / "scheduler.log"
        with pytest.raises(SchedulerBusyError, match="a scheduler already runs for project proj") as caught:
            scheduler.serve_scheduler(project.path, idle_exit_s=1)
        assert caught.value.pid == os.getpid() and http_status(caught.value) == 409
    finally:
        lock.release()


def test_a_lock_without_a_pid_cannot_be_stopped_blindly(project: Project) -> None:
    handle = (project.path / LOCK_FILE).open("a+")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, but no pid written
    try:
        assert scheduler.scheduler_state(project.path).pid == -1
        with pytest.raises(OrchestratorError, match="is held but names no pid"):
            scheduler.stop_scheduler(project.path)
    finally:
        handle.close()


@pytest.mark.parametrize(("options", "message"), [
    ({"idle_exit_s": -1}, "idle exit -1 s: must be 0 or more"),
    ({"workers": 0}, "workers 0: must be 1 or more"),
    ({"retries": -2}, "retries -2: must be 0 or more"),
])  # fmt: skip
def test_serve_argument_errors(project: Project, options: dict[str, float], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        scheduler.serve_scheduler(project.path, **options)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="idle exit -1 s"):
        scheduler.start_scheduler(project.path, idle_exit_s=-1)
