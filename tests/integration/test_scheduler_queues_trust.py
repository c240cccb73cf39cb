"""Runs you can trust on the real SLURM: one writer per SQLite store, outcome records, kills.

- the compute nodes see the project under another path (``path_map``) where the store does not
  exist: runs that read and register sets, in pilots and as batch jobs, finish and are recorded
  in full by the scheduler; nothing on the job's side ever names the store;
- kill -9 of the scheduler three times during a run of hundreds of short steps in pilots: every
  step recorded finished exactly once, run more than once only when a kill caught it in flight.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra.services import require_service
from run_checks import assert_exactly_once

from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import planner
from orchestrator.scheduler.control import wait_for_run
from orchestrator.store import RunState
from orchestrator.worker.outcome import attempt_dir, read_outcome

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def submit(project: Project, protocol: str, host: str, **params: object) -> int:
    with project.open_store() as store:
        return planner.create_run(store, project, discover(), protocol, {k: str(v) for k, v in params.items()},
                                  host=host).id


def start_scheduler(project: Project) -> subprocess.Popen[bytes]:
    log = open(project.path / "daemon-test.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "orchestrator.scheduler.daemon", str(project.path),
                             "--idle-exit", "2", "--workers", "1"], stdout=log, stderr=log, start_new_session=True)


def log_tail(project: Project) -> str:
    path = project.path / "daemon-test.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-40:]) if path.exists() else ""


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Project, Path]]:
    """A project, and the view of it the "compute nodes" get: its run folders and its credentials
    (the pilots' TLS files), not its store."""
    for key, value in require_service("slurm").items():
        monkeypatch.setenv(key, value)
    project = Project.create(tmp_path / "scheduler side" / "proj")
    view = tmp_path / "node side" / "proj"
    view.mkdir(parents=True)
    (view / "runs").symlink_to(project.path / "runs")
    (view / ".orch").symlink_to(project.path / ".orch")  # made when the scheduler first needs it
    assert not (view / "store.sqlite").exists()
    hosts = tmp_path / "hosts.toml"
    base = (REPO / "hosts" / "ci-test.toml").read_text()
    mapping = f'\npath_map = {{ {json.dumps(str(project.path))} = {json.dumps(str(view))} }}\n'
    for name in ("ci-slurm", "ci-slurm-jobs"):
        base = base.replace(f"[hosts.{name}]\n", f"[hosts.{name}]{mapping}", 1)
    hosts.write_text(base)
    monkeypatch.setenv("ORCH_HOSTS", str(hosts))
    yield project, view


@pytest.mark.parametrize("host", ["ci-slurm", "ci-slurm-jobs"])
def test_steps_that_cannot_reach_the_store_are_recorded_in_full(mapped: tuple[Project, Path], host: str) -> None:
    project, view = mapped
    made = submit(project, "testkit.particles", host, count=60, classes=3)
    chosen = submit(project, "testkit.select", host, particles=f"{made}.particles", class_id=2)
    proc = start_scheduler(project)
    try:
        with project.open_store() as store:
            for run_id in (made, chosen):
                run = wait_for_run(store, run_id, timeout_s=240)
                assert run.run_state is RunState.FINISHED, (run.error, log_tail(project))
            particles = store.get_set(store.outputs.get(made, "particles").set_id)
            selected = store.get_set(store.outputs.get(chosen, "selected").set_id)
            classes = store.get_set(store.outputs.get(chosen, "classes").set_id)
            assert particles.size == 60 and selected.size == 20 and classes.size == 1
            assert set(selected.to_numpy(["class_id"])["class_id"]) == {2}
            assert selected.properties["classes_set_id"] == classes.id  # a placeholder, resolved on record
            assert particles.stream_state.value == selected.stream_state.value == "closed"
            for run_id in (made, chosen):
                (step,) = store.steps.list(run_id)
                assert step.state == "finished" and step.host == host and step.job_id and step.worker
                events = [e.state for e in store.events.list(run_id=run_id) if e.kind == "step"]
                assert events == ["queued", "running", "finished"]
                folder = attempt_dir(project.run_dir(store.runs.get(run_id).name), step.name, step.attempt)
                outcome = read_outcome(folder)
                assert outcome is not None and outcome.ok  # the durable record the job left
                assert outcome.log_path.startswith(str(view))  # it ran with the nodes' paths
            # the input set reached the job as an exported file, never through the store
            exported = project.run_dir(store.runs.get(chosen).name) / "inputs" / "sets"
            assert [p.name for p in exported.iterdir()] == [f"set_{particles.id}.npz"]
        for payload in project.runs_dir.rglob("payload.json"):
            data = json.loads(payload.read_text())
            assert data["store_url"] == "" and str(view) in data["run_dir"]
    finally:
        proc.wait(120)


def test_three_kills_during_a_run_in_pilots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in require_service("slurm").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ORCH_HOSTS", str(REPO / "hosts" / "ci-test.toml"))
    project = Project.create(tmp_path / "proj")
    count = 200
    run_id = submit(project, "testkit.ledger", "ci-slurm", count=count, seconds=0.05)
    with project.open_store() as store:
        for fraction in (0.2, 0.45, 0.7):
            proc = start_scheduler(project)
            wait_until(lambda f=fraction: store.steps.counts(run_id).get("finished", 0) >= f * count, 240,
                       f"{fraction:.0%} of the steps ({log_tail(project)})")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc = start_scheduler(project)
        final = wait_for_run(store, run_id, timeout_s=300)
        proc.wait(120)
        assert final.run_state is RunState.FINISHED, (final.error, log_tail(project))
        assert_exactly_once(project, store, run_id, count)
        assert all(s.host == "ci-slurm" and s.job_id for s in store.steps.list(run_id))  # all in pilots
