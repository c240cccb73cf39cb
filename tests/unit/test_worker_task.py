"""What a worker records for one step: RUNNING only for steps that outlast the delay, always a true history."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.protocol import StepContext
from orchestrator.store import ProjectStore, StepState
from orchestrator.store.step_writer import StepWriter
from orchestrator.worker import runtime as worker_task
from orchestrator.worker.runtime import RunningMarker, StepFailed, StepPayload, run_step_task

DELAY_S = 0.05
STEP_MODULE = Path(__file__).stem  # pytest puts this folder on sys.path: the steps below load by name


def wait_for_the_marker(ctx: StepContext, child: bool = False) -> dict[str, Any]:
    """A step that (maybe) starts a program, runs until the marker has acted, returns its stored state then."""
    program = subprocess.Popen(["sleep", "30"]) if child else None
    with ProjectStore.open(ctx.store_url) as store:
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
    for writer in worker_task._writers.values():
        writer.close()
        writer.engine.dispose()
    worker_task._writers.clear()


def queued_step(store: ProjectStore, tmp_path: Path, store_url: str, func: str, args: dict[str, object],
                host: str = "other") -> StepPayload:
    run = store.runs.create("testkit.noop")
    step_id = store.steps.add(run.id, [{"name": "s", "func": func, "args": args}])["s"]
    store.steps.transition(step_id, StepState.QUEUED)
    return StepPayload(store_url=store_url, project_dir=str(tmp_path), run_id=run.id, run_dir=str(tmp_path / "run"),
                       step_id=step_id, step_name="s", func=func, args=args, attempt=1,
                       log_path=str(tmp_path / "run" / "logs" / "s.log"), host=host)


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
        payload = queued_step(store, tmp_path, store_url, f"{STEP_MODULE}:wait_for_the_marker", {})
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
        payload = queued_step(store, tmp_path, store_url, "orch_testkit.steps:sleep_step", {"seconds": 5})
        store.steps.transition(payload.step_id, StepState.CANCELLED)
        started = time.monotonic()
        assert run_step_task(payload) == {"skipped": True}
        assert time.monotonic() - started < 2
        assert store.steps.get(payload.step_id).state == "cancelled"


@pytest.mark.parametrize("host", ["local", "other"])
def test_a_step_cancelled_before_it_was_marked_is_stopped(store_url: str, tmp_path: Path, host: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancellers kill the processes of the steps they find RUNNING; an unmarked step does it itself.

    ``orch cancel`` kills a local step's worker process too; elsewhere only what the step started.
    """
    killed: list[int] = []
    monkeypatch.setattr(worker_task, "kill_tree", lambda pid: killed.append(pid) or [pid])
    monkeypatch.setattr(StepWriter, "state", lambda self, step_id: StepState.QUEUED)  # it lands just after this
    with ProjectStore.create(store_url, "p") as store:
        payload = queued_step(store, tmp_path, store_url, f"{STEP_MODULE}:wait_for_the_marker", {"child": True},
                              host=host)
        store.steps.transition(payload.step_id, StepState.CANCELLED)
        result = run_step_task(payload)
        assert result["state_while_running"] == "cancelled"
        step = store.steps.get(payload.step_id)
        assert step.state == "cancelled" and step.finished_at is None  # its end was not recorded over the cancel
        if host == "local":
            assert killed == [worker_task.os.getpid()]
        else:  # what the step started (this test process may have other children of its own)
            assert result["child"] in killed and worker_task.os.getpid() not in killed
