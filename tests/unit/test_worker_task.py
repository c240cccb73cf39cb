"""What a worker records for one step: RUNNING only for steps that outlast the delay, always a true history,
only for its own attempt; and what a step away from the store leaves instead (its outcome record)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.protocol import StepContext
from orchestrator.store import ProjectStore, QueuedAttempt, StepState
from orchestrator.store.step_writer import StepWriter
from orchestrator.worker import runtime as worker_task
from orchestrator.worker.monitoring import RunningMarker
from orchestrator.worker.outcome import AttemptReplayed, attempt_dir, read_outcome
from orchestrator.worker.processes import TOKEN_VARIABLE, StepProcesses, step_token
from orchestrator.worker.runtime import StepFailed, StepPayload, run_reported_step, run_step_task

DELAY_S = 0.05
STEP_MODULE = Path(__file__).stem  # pytest puts this folder on sys.path: the steps below load by name


def wait_for_the_marker(ctx: StepContext, store_url: str, child: bool = False) -> dict[str, Any]:
    """A step that (maybe) starts a program, runs until the marker has acted, returns its stored state then."""
    program = subprocess.Popen(["sleep", "30"]) if child else None
    with ProjectStore.open(store_url) as store:
        step = next(s for s in store.steps.list(ctx.run_id) if s.name == ctx.step_name)
        marker, deadline = RunningMarker.shared(), time.monotonic() + 30
        while marker._current is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        with marker._lock:  # it writes under its lock
            state = store.steps.get(step.id).state
    if program is not None:
        program.kill()
        program.wait()
        return {"state_while_running": state, "child": program.pid}
    return {"state_while_running": state}


@pytest.fixture(autouse=True)
def _fresh_worker_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A marker with a known delay, and no store connection kept from another test's database."""
    monkeypatch.setattr(RunningMarker, "_instance", RunningMarker(delay_s=DELAY_S))
    yield
    for writer, _lifecycle in worker_task._writers.values():
        writer.close()
        writer.engine.dispose()
    worker_task._writers.clear()


def queued_step(store: ProjectStore, tmp_path: Path, store_url: str, func: str, args: dict[str, object],
                host: str = "other") -> StepPayload:
    run = store.runs.create("testkit.noop")
    step_id = store.steps.add(run.id, [{"name": "s", "func": func, "args": args}])["s"]
    assert store.lifecycle.queue_steps([QueuedAttempt(step_id, 1, host)]) == [step_id]
    return StepPayload(store_url=store_url, project_dir=str(tmp_path), run_id=run.id, run_dir=str(tmp_path / "run"),
                       step_id=step_id, step_name="s", func=func, args=args, attempt=1,
                       log_path=str(tmp_path / "run" / "logs" / "s.log"), host=host,
                       token=step_token(store_url, step_id, 1))


def step_events(store: ProjectStore, payload: StepPayload) -> list[str]:
    return [e.state for e in store.events.list(run_id=payload.run_id) if e.kind == "step"]


def test_a_short_step_records_running_and_finished_in_one_go(store_url: str, tmp_path: Path) -> None:
    with ProjectStore.create(store_url, "p") as store:
        payload = queued_step(store, tmp_path, store_url, "orch_testkit.steps:noop_step", {})
        assert run_step_task(payload) is None
        step = store.steps.get(payload.step_id)
        assert step.state == "finished" and step.worker and step.pid and step.attempt == 1
        assert step.started_at is not None and step.finished_at is not None and step.peak_memory_mb
        assert step_events(store, payload) == ["queued", "running", "finished"]
        assert Path(payload.log_path).exists()  # its folder was made on first use


def test_a_long_step_is_marked_running_while_it_runs(store_url: str, tmp_path: Path) -> None:
    with ProjectStore.create(store_url, "p") as store:
        payload = queued_step(store, tmp_path, store_url, f"{STEP_MODULE}:wait_for_the_marker",
                              {"store_url": store_url})
        assert run_step_task(payload) == {"state_while_running": "running"}
        step = store.steps.get(payload.step_id)
        assert step.state == "finished" and step.pid and step.duration_s > 0
        assert step_events(store, payload) == ["queued", "running", "finished"]


def test_a_short_failure_records_running_then_failed(store_url: str, tmp_path: Path) -> None:
    with ProjectStore.create(store_url, "p") as store:
        payload = queued_step(store, tmp_path, store_url, "orch_testkit.steps:flaky_step",
                              {"fail_times": 0, "fail_always": True})
        with pytest.raises(StepFailed, match="DeliberateFailure"):
            run_step_task(payload)
        step = store.steps.get(payload.step_id)
        assert step.state == "failed" and step.pid and "fails on purpose" in step.error
        assert step_events(store, payload) == ["queued", "running", "failed"]


def test_a_step_cancelled_before_it_started_does_not_run(store_url: str, tmp_path: Path) -> None:
    with ProjectStore.create(store_url, "p") as store:
        payload = queued_step(store, tmp_path, store_url, "orch_testkit.steps:flaky_step",
                              {"fail_times": 0, "fail_always": False})  # leaves run/fail_counter.txt if it runs
        store.lifecycle.cancel_steps([payload.step_id], "cancelled")
        assert run_step_task(payload) == {"skipped": "cancelled"}
        assert not (Path(payload.run_dir) / "fail_counter.txt").exists()  # its function never ran
        assert store.steps.get(payload.step_id).state == "cancelled"


@pytest.mark.parametrize("host", ["local", "other"])
def test_a_step_cancelled_before_it_was_marked_is_stopped(store_url: str, tmp_path: Path, host: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancellers kill the processes of the steps they find RUNNING; an unmarked step does it itself.

    ``orch cancel`` kills a local step's worker process too; elsewhere only what the step started.
    """
    ended: list[tuple[str, bool]] = []
    monkeypatch.setattr(StepProcesses, "kill", lambda self, include_worker=True, timeout_s=5.0:
                        ended.append((self.token, include_worker)) or [])
    monkeypatch.setattr(StepWriter, "state", lambda self, step_id: (StepState.QUEUED, 1))  # it lands just after
    with ProjectStore.create(store_url, "p") as store:
        payload = queued_step(store, tmp_path, store_url, f"{STEP_MODULE}:wait_for_the_marker",
                              {"child": True, "store_url": store_url},
                              host=host)
        store.lifecycle.cancel_steps([payload.step_id], "cancelled", sources=(StepState.QUEUED,))
        result = run_step_task(payload)
        assert result == {"skipped": "cancelled while it ran"}
        step = store.steps.get(payload.step_id)
        assert step.state == "cancelled" and step.result is None  # its end was not recorded over the cancel
        # its processes, found by its token; the worker itself too where `orch cancel` ends it (local)
        assert ended == [(payload.token, host == "local")]


def child_environment(ctx: StepContext) -> dict[str, Any]:
    """A step that starts a program and returns what that program's environment says."""
    out = subprocess.run(["sh", "-c", f'echo "${TOKEN_VARIABLE}"'], capture_output=True, text=True, check=True)
    return {"token_in_child": out.stdout.strip()}


def test_a_stale_attempt_neither_runs_nor_writes(store_url: str, tmp_path: Path) -> None:
    """An orphaned attempt 1 that turns up after attempt 2 was queued cannot write attempt 2's end."""
    with ProjectStore.create(store_url, "p") as store:
        payload = queued_step(store, tmp_path, store_url, "orch_testkit.steps:noop_step", {})
        assert store.lifecycle.fail_step(payload.step_id, 1, "worker lost")
        assert store.lifecycle.queue_steps([QueuedAttempt(payload.step_id, 2, "local")]) == [payload.step_id]
        assert run_step_task(payload) == {"skipped": "a newer attempt of this step exists"}
        writer = StepWriter(store.engine)
        assert not writer.finish(payload.step_id, payload.run_id, 1, result={"from": "attempt 1"})
        assert not store.lifecycle.finish_step(payload.step_id, 1, {"from": "attempt 1"})
        writer.close()
        step = store.steps.get(payload.step_id)
        assert (step.state, step.attempt, step.result) == ("queued", 2, None)


def test_finished_is_never_overwritten(store_url: str, tmp_path: Path) -> None:
    with ProjectStore.create(store_url, "p") as store:
        payload = queued_step(store, tmp_path, store_url, "orch_testkit.steps:noop_step", {})
        assert run_step_task(payload) is None
        # the scheduler took the worker's death for a failure: the failure and the retry are refused
        assert not store.lifecycle.fail_step(payload.step_id, 1, "worker lost: KilledWorker")
        assert store.lifecycle.queue_steps([QueuedAttempt(payload.step_id, 2, "local")]) == []
        step = store.steps.get(payload.step_id)
        assert (step.state, step.attempt, step.failed_attempts) == ("finished", 1, 0)


def test_an_attempt_runs_once(store_url: str, tmp_path: Path) -> None:
    """dask re-runs a task whose worker left the cluster: the second run of the attempt is refused."""
    with ProjectStore.create(store_url, "p") as store:
        payload = queued_step(store, tmp_path, store_url, "orch_testkit.steps:noop_step", {})
        assert store.lifecycle.start_step(payload.step_id, 1, worker="tcp://gone:1", pid=1)
        with pytest.raises(AttemptReplayed):
            run_step_task(payload)
        assert store.steps.get(payload.step_id).worker == "tcp://gone:1"


def test_the_steps_programs_carry_its_token(store_url: str, tmp_path: Path) -> None:
    with ProjectStore.create(store_url, "p") as store:
        payload = queued_step(store, tmp_path, store_url, f"{STEP_MODULE}:child_environment", {})
        assert run_step_task(payload) == {"token_in_child": payload.token}
        assert TOKEN_VARIABLE not in worker_task.os.environ  # only while the step runs


def test_a_reported_step_leaves_its_outcome_and_never_opens_the_store(tmp_path: Path) -> None:
    payload = StepPayload(store_url="", project_dir=str(tmp_path), run_id=7, run_dir=str(tmp_path / "run"),
                          step_id=11, step_name="s", func=f"{STEP_MODULE}:child_environment", args={}, attempt=3,
                          log_path=str(tmp_path / "run" / "logs" / "s.log"), host="cluster", token="t/11/3")
    outcome = run_reported_step(payload)
    assert outcome.ok and outcome.result == {"token_in_child": "t/11/3"} and outcome.attempt == 3
    folder = attempt_dir(payload.run_dir, "s", 3)
    assert read_outcome(folder) == outcome and (folder.stat().st_mode & 0o777) == 0o700
    assert ((folder / "outcome.json").stat().st_mode & 0o777) == 0o600
    with pytest.raises(AttemptReplayed):
        run_reported_step(payload)
    failing = StepPayload(**{**payload.__dict__, "func": "orch_testkit.steps:flaky_step",
                             "args": {"fail_times": 0, "fail_always": True}, "attempt": 4})
    failed = run_reported_step(failing)
    assert not failed.ok and "DeliberateFailure" in (failed.error or "") and "fails on purpose" in failed.log_tail
    assert read_outcome(attempt_dir(payload.run_dir, "s", 4)) == failed
