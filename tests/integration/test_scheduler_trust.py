"""Runs you can trust, on the local host: real worker processes, real kills, real mpirun.

- kill -9 of the scheduler three times during a run of hundreds of short steps: every step is
  recorded finished exactly once, and runs more than once only if it was in flight at a kill;
- the retry budget survives a scheduler restart;
- the failure paths: an upstream run that failed or was cancelled, a permanent failure among
  long siblings (ended, not left running), outputs that cannot be collected, ``max_in_flight``;
- a step's whole process tree (``mpirun`` and its ranks) ends with a cancel and with crash recovery.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from infra.services import require
from run_checks import assert_exactly_once

from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import daemon, planner
from orchestrator.scheduler.control import cancel_run, wait_for_run
from orchestrator.scheduler.engine import Scheduler, SchedulerConfig
from orchestrator.scheduler.executors.local import LocalHostSpec, start_local_cluster
from orchestrator.store import ProjectStore, RunState, StepState

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


def submit(project: Project, protocol: str, **params: object) -> int:
    with project.open_store() as store:
        return planner.create_run(store, project, discover(), protocol, {k: str(v) for k, v in params.items()}).id


def start_scheduler(project: Project, workers: int = 2) -> subprocess.Popen[bytes]:
    log = open(project.path / "daemon-test.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "orchestrator.scheduler.daemon", str(project.path),
                             "--idle-exit", "1", "--workers", str(workers)], stdout=log, stderr=log,
                            start_new_session=True)


def kill_9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_until(condition, timeout_s: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_three_kills_during_a_run_of_hundreds_of_steps(project: Project) -> None:
    count = 300
    run_id = submit(project, "testkit.ledger", count=count, seconds=0.02)
    with project.open_store() as store:
        for fraction in (0.2, 0.45, 0.7):
            proc = start_scheduler(project)
            wait_until(lambda f=fraction: store.steps.counts(run_id).get("finished", 0) >= f * count, 180,
                       f"{fraction:.0%} of the steps")
            kill_9(proc)
        proc = start_scheduler(project)
        final = wait_for_run(store, run_id, timeout_s=240)
        proc.wait(60)
        assert final.run_state is RunState.FINISHED, final.error
        requeued = assert_exactly_once(project, store, run_id, count)
        assert requeued  # the kills did catch steps in flight, and those were run again
        attempts = {s.name: s.attempt for s in store.steps.list(run_id)}
        assert all(attempts[name] == 1 for name in set(attempts) - requeued)


def test_the_retry_budget_survives_a_scheduler_restart(project: Project) -> None:
    run_id = submit(project, "testkit.slowfail", seconds=2, retries=1)
    proc = start_scheduler(project)
    with project.open_store() as store:
        def retried() -> bool:
            steps = store.steps.list(run_id)
            return bool(steps) and steps[0].failed_attempts == 1 and steps[0].attempt == 2

        wait_until(retried, 60, "the first failure and the retry")
        kill_9(proc)  # attempt 2 is in flight: lost with the scheduler, not a failure of the step
        proc = start_scheduler(project)
        final = wait_for_run(store, run_id, timeout_s=90)
        proc.wait(60)
        step = store.steps.list(run_id)[0]
        assert final.run_state is RunState.FAILED and "failed after 2 attempt(s)" in (final.error or "")
        # one retry in all: a fresh budget after the restart would have allowed attempts 3 and 4
        assert (step.attempt, step.failed_attempts) == (3, 2)


def test_a_run_whose_input_run_failed_or_was_cancelled_fails(project: Project) -> None:
    with project.open_store() as store:
        failed = planner.create_run(store, project, discover(), "testkit.produce", {"count": "1"}, name="bad")
        cancelled = planner.create_run(store, project, discover(), "testkit.produce", {"count": "1"}, name="gone")
        store.lifecycle.fail_run(failed.id, "the microscope's disk was full")
        cancel_run(store, cancelled.id)
        after_failed = planner.create_run(store, project, discover(), "testkit.chain", {"source": "bad.files"})
        after_cancelled = planner.create_run(store, project, discover(), "testkit.chain", {"source": "gone.files"})
    assert daemon.serve(project, idle_exit_s=0.5, workers=1) == 0
    with project.open_store() as store:
        for run_id, why in ((after_failed.id, "run bad, which is failed"), (after_cancelled.id, "run gone, which "
                                                                                          "is cancelled")):
            run = store.runs.get(run_id)
            assert run.run_state is RunState.FAILED and why in (run.error or "")
            assert store.steps.list(run_id) == []  # nothing of it ran


def test_a_permanent_failure_ends_the_long_siblings(project: Project) -> None:
    run_id = submit(project, "testkit.partial", count=2, seconds=600)
    started = time.monotonic()
    assert daemon.serve(project, idle_exit_s=0.5, workers=3) == 0
    assert time.monotonic() - started < 300  # nothing waited for the 600 s siblings
    with project.open_store() as store:
        run = store.runs.get(run_id)
        assert run.run_state is RunState.FAILED and "step 'broken' failed after 1 attempt(s)" in (run.error or "")
        states = {s.name: s.state for s in store.steps.list(run_id)}
        assert states["broken"] == "failed"
        assert states["sibling_0"] == states["sibling_1"] == "cancelled"
        run_dir = project.run_dir(run.name)
        for name in ("sibling_0", "sibling_1"):
            pid_file = run_dir / f"{name}.pid"
            if pid_file.exists():  # it had started: its process is gone
                pid = int(pid_file.read_text())
                assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_outputs_that_cannot_be_collected_fail_the_run(project: Project) -> None:
    run_id = submit(project, "testkit.badoutputs", count=2)
    assert daemon.serve(project, idle_exit_s=0.5, workers=1) == 0
    with project.open_store() as store:
        run = store.runs.get(run_id)
        assert run.run_state is RunState.FAILED
        assert run.error.startswith("outputs: testkit.badoutputs: no output 'result'")
        assert {s.state for s in store.steps.list(run_id)} == {"finished"} and store.outputs.list(run_id) == []


def test_max_in_flight_bounds_the_steps_handed_to_dask(project: Project) -> None:
    run_id = submit(project, "testkit.ledger", count=40, seconds=0.05)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        with project.open_store() as store:
            while not stop.is_set():
                counts = store.steps.counts(run_id)
                peak[0] = max(peak[0], counts.get("queued", 0) + counts.get("running", 0))
                time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with project.open_store() as store:
            scheduler = Scheduler(project, None, store, config=SchedulerConfig(max_in_flight=4),
                                  start_local=lambda: start_local_cluster(LocalHostSpec(workers=2)))
            try:
                scheduler.run_until_idle(idle_exit_s=0.5)
            finally:
                scheduler.close_hosts()
            assert store.runs.get(run_id).run_state is RunState.FINISHED
    finally:
        stop.set()
        sampler.join()
    assert 1 <= peak[0] <= 4


# ---------------------------------------------------------------------- a step's whole process tree
def mpirun_command() -> list[str]:
    require(shutil.which("mpirun") is not None,
            "mpirun is missing: `make test` installs openmpi-bin (tests/infra/system-deps.sh relion)")
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return ["mpirun", *root, "--oversubscribe", "-np", "2", "sleep", "600"]


def spawned_tree(project: Project, store: ProjectStore, run_id: int, timeout_s: float = 60) -> list[int]:
    """The pids of the step's program (mpirun) and everything under it, once its ranks run."""
    record = project.run_dir(store.runs.get(run_id).name) / "spawn.json"
    wait_until(record.exists, timeout_s, "the step to start mpirun")
    program = psutil.Process(json.loads(record.read_text())["program"])
    wait_until(lambda: sum(1 for c in program.children(recursive=True) if c.name() == "sleep") >= 2, timeout_s,
               "the two ranks")
    return [program.pid, *(c.pid for c in program.children(recursive=True))]


def gone(pids: list[int]) -> bool:
    return all(not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE for p in pids)


def test_cancel_ends_mpirun_and_its_ranks(project: Project) -> None:
    run_id = submit(project, "testkit.spawn", command=json.dumps(mpirun_command()))
    proc = start_scheduler(project, workers=1)
    with project.open_store() as store:
        tree = spawned_tree(project, store, run_id)
        wait_until(lambda: store.steps.list(run_id, [StepState.RUNNING]) != [], 30, "the step to be marked running")
        cancel_run(store, run_id)
        wait_until(lambda: gone(tree), 30, "mpirun and its ranks to end")
        proc.wait(60)
        assert store.runs.get(run_id).run_state is RunState.CANCELLED


def test_crash_recovery_ends_mpirun_and_its_ranks_before_the_rerun(project: Project) -> None:
    run_id = submit(project, "testkit.spawn", command=json.dumps(mpirun_command()))
    proc = start_scheduler(project, workers=1)
    with project.open_store() as store:
        tree = spawned_tree(project, store, run_id)
        wait_until(lambda: store.steps.list(run_id, [StepState.RUNNING]) != [], 30, "the step to be marked running")
        record = project.run_dir(store.runs.get(run_id).name) / "spawn.json"
        kill_9(proc)
        record.unlink()
        proc = start_scheduler(project, workers=1)
        try:
            wait_until(lambda: gone(tree), 60, "the first attempt's mpirun and ranks to end")
            new_tree = spawned_tree(project, store, run_id)  # the re-run started a fresh one
            assert not set(new_tree) & set(tree)
            assert store.steps.list(run_id)[0].attempt == 2
        finally:
            cancel_run(store, run_id)
            proc.wait(60)
