"""Kill only our own processes: a step's processes are known by its token and the worker's (pid, start time).

Real processes, no scheduler: a step left RUNNING by a dead scheduler, its recorded pid now
belonging to an unrelated process (pid reuse after a reboot), and a child of the step that
outlived its worker (reparented to init).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from lifecycle_helpers import put_run, put_step

from orchestrator.project import Project
from orchestrator.scheduler.control import cancel_run
from orchestrator.scheduler.reconcile import reconcile_after_crash
from orchestrator.store import RunState, StepState
from orchestrator.worker.processes import TOKEN_VARIABLE, StepProcesses, process_start, step_token

pytestmark = pytest.mark.integration


def _sleeper(token: str | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop(TOKEN_VARIABLE, None)
    if token:
        env[TOKEN_VARIABLE] = token
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env)


def _gone(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> bool:
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return True


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


def _running_step(project: Project, pid: int, proc_start: float) -> tuple[int, str]:
    with project.open_store() as store:
        run = store.runs.create("testkit.hold", {}, name="held")
        put_run(store, run.id, RunState.RUNNING)
        step_id = store.steps.add(run.id, [{"name": "hold", "func": "orch_testkit.steps:hold_step"}])["hold"]
        attempt = put_step(store, step_id, StepState.RUNNING, worker="tcp://127.0.0.1:1", pid=pid,
                           proc_start=proc_start)
        return step_id, step_token(store.url, step_id, attempt)


def test_recovery_spares_a_recycled_pid_and_ends_the_orphans_of_the_step(project: Project) -> None:
    stranger = _sleeper()  # holds the pid the store names, but started at another time: not ours
    step_id, token = _running_step(project, stranger.pid, process_start(stranger.pid) - 3600)
    orphan = _sleeper(token)  # what the step started, reparented when its worker died
    try:
        with project.open_store() as store:
            assert reconcile_after_crash(store, project.path) == [step_id]
            step = store.steps.get(step_id)
            assert (step.state, step.attempt, step.pid) == ("pending", 1, None)
        assert _gone(orphan)
        time.sleep(0.2)
        assert stranger.poll() is None and psutil.pid_exists(stranger.pid)
    finally:
        for proc in (stranger, orphan):
            proc.kill()
            proc.wait()


def test_cancel_ends_the_worker_it_recorded_and_what_it_started(project: Project) -> None:
    worker = _sleeper()
    step_id, token = _running_step(project, worker.pid, process_start(worker.pid))
    child = _sleeper(token)
    bystander = _sleeper("someone-else/1/1")
    try:
        with project.open_store() as store:
            killed = cancel_run(store, "held")
            assert store.steps.get(step_id).state == "cancelled"
        assert set(killed) == {worker.pid, child.pid}
        assert _gone(worker) and _gone(child) and bystander.poll() is None
        assert StepProcesses(token, worker.pid, process_start()).find() == []
    finally:
        for proc in (worker, child, bystander):
            proc.kill()
            proc.wait()
