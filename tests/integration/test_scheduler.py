"""The scheduler on real processes: a LocalCluster of worker processes, a real store, real kills.

Each test starts the scheduler either in-process (``daemon.serve`` with a short idle exit)
or as its own process (``python -m orchestrator.scheduler.daemon``) when the test kills it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import daemon, planner
from orchestrator.scheduler.control import cancel_run, wait_for_run
from orchestrator.store import RunState, StepState

pytestmark = pytest.mark.integration


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


def submit(project: Project, protocol: str, **params: object) -> int:
    with project.open_store() as store:
        run = planner.create_run(store, project, discover(), protocol, {k: str(v) for k, v in params.items()})
        return run.id


def serve(project: Project) -> None:
    assert daemon.serve(project, idle_exit_s=0.5, workers=2) == 0


def start_daemon_process(project: Project) -> subprocess.Popen[bytes]:
    log = open(project.path / "daemon-test.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "orchestrator.scheduler.daemon", str(project.path),
                             "--idle-exit", "1", "--workers", "2"], stdout=log, stderr=log,
                            start_new_session=True)


def wait_until(condition, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_runs_steps_and_dependent_runs(project: Project) -> None:
    fanout = submit(project, "testkit.fanout", count=6)
    produce = submit(project, "testkit.produce", count=3, size=2048)
    chain = submit(project, "testkit.chain", source=f"{produce}.files")
    serve(project)
    with project.open_store() as store:
        for run_id in (fanout, produce, chain):
            assert store.runs.get(run_id).run_state is RunState.FINISHED, store.runs.get(run_id).error
        assert store.outputs.get(fanout, "total").value == {"total": 21}
        steps = store.steps.list(fanout)
        assert {s.state for s in steps} == {"finished"} and len(steps) == 7
        assert all(s.worker and s.pid and s.duration_s is not None and s.peak_memory_mb for s in steps)
        assert all(s.pid != os.getpid() for s in steps)  # steps ran in worker processes
        events = [(e.step_id, e.state) for e in store.events.list(run_id=fanout) if e.kind == "step"]
        for step in steps:
            assert [state for sid, state in events if sid == step.id] == ["queued", "running", "finished"]
        derived = (project.run_dir(store.runs.get(chain).name) / "derived.txt").read_text().splitlines()
        assert len(derived) == 3 and derived[0].startswith("file_0000.bin 2048 ")
        assert store.runs.inputs(chain)[0].producer_run_id == produce
        run_started = store.runs.get(chain).started_at
        assert run_started >= store.runs.get(produce).finished_at  # it waited for its input


def test_retries_then_failure_with_log_tail(project: Project) -> None:
    flaky = submit(project, "testkit.fail", fail_times=1)
    broken = submit(project, "testkit.fail", fail_always="true", retries=1)
    serve(project)
    with project.open_store() as store:
        assert store.runs.get(flaky).run_state is RunState.FINISHED
        assert store.steps.list(flaky)[0].attempt == 2
        failed = store.runs.get(broken)
        assert failed.run_state is RunState.FAILED
        assert "failed after 2 attempt(s)" in failed.error and "DeliberateFailure" in failed.error
        step = store.steps.list(broken)[0]
        assert step.state == "failed" and "last lines of" in step.error and "fails on purpose" in step.error
        log_file = project.run_dir(failed.name) / "logs" / "flaky.log"
        assert "Traceback" in log_file.read_text()


def test_relaunch_skips_unchanged_and_reruns_downstream_of_a_change(project: Project) -> None:
    fanout = submit(project, "testkit.fanout", count=4)
    serve(project)
    with project.open_store() as store:
        before = {s.name: s for s in store.steps.list(fanout)}
        run_dir = project.run_dir(store.runs.get(fanout).name)
        store.lifecycle.restart_run(fanout)  # relaunch, nothing changed
    serve(project)
    with project.open_store() as store:
        after = {s.name: s for s in store.steps.list(fanout)}
        assert {n: s.started_at for n, s in after.items()} == {n: s.started_at for n, s in before.items()}
        assert store.runs.get(fanout).run_state is RunState.FINISHED
        (run_dir / "parts" / "part_0002.json").unlink()  # an output of one branch is lost
        store.lifecycle.restart_run(fanout)  # relaunch after a change
    serve(project)
    with project.open_store() as store:
        final = {s.name: s for s in store.steps.list(fanout)}
        rerun = {n for n in final if final[n].started_at != before[n].started_at}
        assert rerun == {"part_2", "gather"}  # the changed step and everything downstream of it
        assert store.outputs.get(fanout, "total").value == {"total": 10}


def test_changed_input_file_reruns_the_consumer(project: Project) -> None:
    produce = submit(project, "testkit.produce", count=2, size=100)
    chain = submit(project, "testkit.chain", source=f"{produce}.files")
    serve(project)
    with project.open_store() as store:
        first = store.steps.list(chain)[0]
        produced = project.run_dir(store.runs.get(produce).name) / "out" / "file_0001.bin"
        produced.write_bytes(b"changed at the source" * 10)
        store.lifecycle.restart_run(chain)
    serve(project)
    with project.open_store() as store:
        second = store.steps.list(chain)[0]
        assert second.started_at != first.started_at and second.hash != first.hash
        derived = project.run_dir(store.runs.get(chain).name) / "derived.txt"
        assert "file_0001.bin 210 " in derived.read_text()


def test_kill_9_of_the_scheduler_then_resume(project: Project) -> None:
    run_id = submit(project, "testkit.sleep", count=8, seconds=1.5)
    proc = start_daemon_process(project)
    with project.open_store() as store:
        wait_until(lambda: store.steps.counts(run_id).get("finished", 0) >= 2, 90, "two finished steps")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        finished_before = {s.name: (s.started_at, s.attempt, s.worker)
                           for s in store.steps.list(run_id, [StepState.FINISHED])}
        assert store.runs.get(run_id).run_state is RunState.RUNNING  # what the dead scheduler left
        proc = start_daemon_process(project)
        final = wait_for_run(store, run_id, timeout_s=120)
        proc.wait(timeout=60)
        assert final.run_state is RunState.FINISHED, final.error
        steps = {s.name: s for s in store.steps.list(run_id)}
        assert all(s.state == "finished" for s in steps.values())
        for name, (started, attempt, worker) in finished_before.items():
            assert (steps[name].started_at, steps[name].attempt, steps[name].worker) == (started, attempt, worker)
        requeued = {e.step_id for e in store.events.list(run_id=run_id) if e.message and "re-queued" in e.message}
        assert requeued  # the steps in flight at the kill were found and re-queued
        assert not requeued & {steps[name].id for name in finished_before}


def test_worker_death_leads_to_a_retry(project: Project) -> None:
    run_id = submit(project, "testkit.hold", seconds=3)
    proc = start_daemon_process(project)
    with project.open_store() as store:
        run_dir = project.run_dir(store.runs.get(run_id).name)
        wait_until(lambda: (run_dir / "hold.pid").exists(), 60, "the hold step to start")
        worker_pid = int((run_dir / "hold.pid").read_text())
        os.kill(worker_pid, signal.SIGKILL)  # the worker process dies mid-step
        final = wait_for_run(store, run_id, timeout_s=90)
        proc.wait(timeout=60)
        assert final.run_state is RunState.FINISHED, final.error
        step = store.steps.list(run_id)[0]
        assert step.attempt == 2 and step.pid != worker_pid
        lost = [e for e in store.events.list(run_id=run_id) if e.state == "failed"]
        assert lost and "worker lost" in lost[0].message


def test_cancel_kills_the_step_process(project: Project) -> None:
    run_id = submit(project, "testkit.hold", seconds=600)
    proc = start_daemon_process(project)
    with project.open_store() as store:
        run_dir = project.run_dir(store.runs.get(run_id).name)
        wait_until(lambda: (run_dir / "hold.pid").exists(), 60, "the hold step to start")
        pid = int((run_dir / "hold.pid").read_text())
        # RUNNING (with the pid a canceller kills) is written once the step has run 30 ms
        wait_until(lambda: store.steps.list(run_id)[0].state == "running", 30, "the step to be marked running")
        killed = cancel_run(store, run_id)
        assert pid in killed
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        proc.wait(timeout=60)  # the scheduler goes idle and exits: nothing retried the step
        assert store.runs.get(run_id).run_state is RunState.CANCELLED
        assert store.steps.list(run_id)[0].state == "cancelled"


def test_python_api_runs_with_a_detached_scheduler(tmp_path: Path) -> None:
    from orchestrator import api

    project = api.project(tmp_path / "api-proj", create=True)
    try:
        run = api.run(project, "testkit.fanout", {"count": 3}, timeout_s=120)
        assert run.run_state is RunState.FINISHED, run.error
        assert api.outputs(project, run.id)["total"].value == {"total": 6}
        assert daemon.running_pid(project) is not None  # detached, it outlives the call
    finally:
        pid = daemon.running_pid(project)
        if pid:
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: daemon.running_pid(project) is None, 60, "the scheduler to stop")


def test_a_running_scheduler_is_woken_not_killed_by_new_runs(project: Project) -> None:
    log = open(project.path / "daemon-test.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.scheduler.daemon", str(project.path),
                             "--idle-exit", "120", "--workers", "1"], stdout=log, stderr=log, start_new_session=True)
    try:
        wait_until(lambda: daemon.running_pid(project) == proc.pid, what="the scheduler to hold the lock")
        for _ in range(3):  # each `orch run` signals the live scheduler (SIGUSR1)
            assert daemon.ensure_daemon(project) == proc.pid
        run_id = submit(project, "testkit.noop", count=2)
        assert daemon.ensure_daemon(project) == proc.pid
        with project.open_store() as store:
            assert wait_for_run(store, run_id, timeout_s=60).run_state is RunState.FINISHED
        assert proc.poll() is None  # the signal woke it; it did not end it
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
