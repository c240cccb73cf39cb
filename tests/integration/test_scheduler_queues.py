"""Runs on queue hosts, end to end: the scheduler daemon, real SLURM (with slurmdbd) and Grid Engine.

The daemon runs as its own process, as ``orch run`` starts it, with ``ORCH_HOSTS`` naming the
test cluster's hosts file. Small steps run in dask-jobqueue pilots, big ones as their own
batch jobs; the tests kill pilots, stop the SLURM controller and cancel runs under it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from infra.services import require_service

from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import planner
from orchestrator.scheduler.control import cancel_run, wait_for_run
from orchestrator.scheduler.reconcile import reconcile_after_crash
from orchestrator.store import RunState, StepRecord, StepState

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
HOSTS_FILE = REPO / "hosts" / "ci-test.toml"
SERVICE = {"ci-slurm": "slurm", "ci-slurm-jobs": "slurm", "ci-sge": "sge"}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


def use_host(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in require_service(SERVICE[name]).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ORCH_HOSTS", str(HOSTS_FILE))


@pytest.fixture
def daemon(project: Project) -> Iterator[subprocess.Popen[bytes]]:
    log = open(project.path / "daemon-test.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.scheduler.daemon", str(project.path),
                             "--idle-exit", "3", "--workers", "1"], stdout=log, stderr=log,
                            start_new_session=True)
    yield proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    log.close()


def submit(project: Project, protocol: str, host: str, **params: object) -> int:
    with project.open_store() as store:
        return planner.create_run(store, project, discover(), protocol, {k: str(v) for k, v in params.items()},
                                  host=host).id


def finish(project: Project, run_id: int, timeout_s: float = 240) -> list[StepRecord]:
    with project.open_store() as store:
        run = wait_for_run(store, run_id, timeout_s=timeout_s)
        assert run.run_state is RunState.FINISHED, (run.state, run.error, _log_tail(project))
        return store.steps.list(run_id)


def wait_for_steps(project: Project, run_id: int, state: StepState, count: int = 1,
                   timeout_s: float = 120) -> list[StepRecord]:
    deadline = time.monotonic() + timeout_s
    with project.open_store() as store:
        while True:
            steps = store.steps.list(run_id, [state])
            if len(steps) >= count:
                return steps
            assert time.monotonic() < deadline, f"no {count} step(s) {state.value}: {_log_tail(project)}"
            time.sleep(0.2)


def squeue(*args: str) -> list[str]:
    done = subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, timeout=30, check=False)
    return done.stdout.split()


def pilot_jobs() -> list[str]:
    return squeue("-n", "orch-pilot-ci-slurm", "-o", "%i")


def _log_tail(project: Project) -> str:
    path = project.path / "daemon-test.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-40:]) if path.exists() else ""


@pytest.mark.parametrize("host", ["ci-slurm", "ci-sge"])
def test_workflow_runs_in_pilot_workers(host: str, project: Project, monkeypatch: pytest.MonkeyPatch,
                                        request: pytest.FixtureRequest) -> None:
    use_host(host, monkeypatch)
    fanout = submit(project, "testkit.fanout", host, count=12)
    sleeps = submit(project, "testkit.sleep", host, count=4, seconds=0.2)
    daemon = request.getfixturevalue("daemon")
    steps = finish(project, fanout)
    with project.open_store() as store:
        assert store.outputs.get(fanout, "total").value == {"total": 78}
    assert len(steps) == 13 and all(s.host == host and s.worker and s.attempt == 1 for s in steps)
    sleep_steps = finish(project, sleeps)
    jobs = {s.result["job"] for s in sleep_steps}
    assert None not in jobs and 1 <= len(jobs) <= 2, jobs  # inside pilot jobs, at most max_pilots of them
    assert all(s.job_id == s.result["job"] and not s.accounting for s in sleep_steps)  # the pilot's, not their own
    _check_programs_asked_once_on(host, project, fanout, sleeps)
    daemon.wait(120)  # idle exit closes the pilot cluster, which cancels the pilots
    if host == "ci-slurm":
        deadline = time.monotonic() + 30
        while pilot_jobs():
            assert time.monotonic() < deadline, f"pilots outlived the scheduler: {pilot_jobs()}"
            time.sleep(0.5)


def _check_programs_asked_once_on(host: str, project: Project, fanout: int, sleeps: int) -> None:
    """Provenance: the steps sent to the host ask the plugin's program versions there until one
    has answered (the 12 parts, sent together, do; the gather step, sent after them, does not);
    the record of each run names what the host said."""
    with project.open_store() as store:
        known = store.host_programs.get(host)
        assert known["python3"]["version"].startswith("Python 3."), known
        for run_id in (fanout, sleeps):
            record = store.provenance.get(run_id)
            assert record is not None
            program = record["software"]["programs"]["python3"]
            assert program["host"] == host and program["version"] == known["python3"]["version"], program
        jobs = project.run_dir(store.runs.get(fanout).name) / "jobs"
        asked = {path.parent.name: bool(json.loads(path.read_text()).get("programs"))
                 for path in jobs.glob("*/outcome.json")}
    assert asked.pop("gather.a1") is False, asked
    assert any(asked.values()), asked


def test_two_gpu_step_runs_as_its_own_job_with_both_gpus(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                         request: pytest.FixtureRequest) -> None:
    use_host("ci-slurm", monkeypatch)
    run_id = submit(project, "testkit.sleep", "ci-slurm", count=1, seconds=0.5, gpus=2)
    request.getfixturevalue("daemon")
    (step,) = finish(project, run_id)
    assert step.job_id and step.result["job"] == step.job_id  # its own job, not a pilot
    assert step.gpus == [0, 1] and step.result["gpus"] == [0, 1]
    assert step.result["cuda_visible_devices"] == "0,1"
    assert step.accounting["job_id"] == step.job_id and step.accounting["state"] == "done"
    assert step.accounting["exit_code"] == 0 and step.accounting["nodes"]
    if require_service("slurm").get("ORCH_TEST_SLURM_ACCOUNTING") == "1":
        assert step.accounting["source"] == "accounting" and step.accounting["elapsed_s"] is not None


def most_at_once(steps: list[StepRecord]) -> int:
    """The most steps whose [started_at, finished_at] overlap at one moment."""
    edges = sorted([(s.started_at, 1) for s in steps] + [(s.finished_at, -1) for s in steps],
                   key=lambda edge: (edge[0], edge[1]))  # an end before a start at the same instant
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def test_host_without_pilots_runs_each_step_as_a_job_within_max_jobs(
        project: Project, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    use_host("ci-slurm-jobs", monkeypatch)
    run_id = submit(project, "testkit.sleep", "ci-slurm-jobs", count=6, seconds=3)
    request.getfixturevalue("daemon")
    steps = finish(project, run_id)
    job_ids = [s.job_id for s in steps]
    assert all(job_ids) and len(set(job_ids)) == 6  # one job each, no pilot
    assert all(s.result["job"] == s.job_id and s.accounting["state"] == "done" for s in steps)
    assert not squeue("-n", "orch-pilot-ci-slurm-jobs", "-o", "%i")
    # 6 one-core steps fit the node's 8 CPUs at once; the host's max_jobs = 2 holds them to 2
    # (not "exactly 2": on a loaded machine one job may start after the other has ended).
    assert 1 <= most_at_once(steps) <= 2


def test_pilot_killed_mid_step_retries_the_step(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                request: pytest.FixtureRequest) -> None:
    use_host("ci-slurm", monkeypatch)
    run_id = submit(project, "testkit.sleep", "ci-slurm", count=1, seconds=15)
    request.getfixturevalue("daemon")
    wait_for_steps(project, run_id, StepState.RUNNING)
    killed = pilot_jobs()
    assert killed
    subprocess.run(["scancel", *killed], check=True, timeout=30)
    (step,) = finish(project, run_id)
    assert step.result["job"] not in killed  # finished in a new pilot
    with project.open_store() as store:
        states = [e.state for e in store.events.list(run_id=run_id) if e.kind == "step"]
    assert states.count("running") >= 2 and "finished" == states[-1], states


def test_controller_down_for_20_s_fails_nothing(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                request: pytest.FixtureRequest) -> None:
    use_host("ci-slurm", monkeypatch)
    small = submit(project, "testkit.sleep", "ci-slurm", count=3, seconds=12)
    big = submit(project, "testkit.sleep", "ci-slurm", count=1, seconds=12, gpus=2)
    request.getfixturevalue("daemon")
    wait_for_steps(project, small, StepState.RUNNING)
    wait_for_steps(project, big, StepState.RUNNING)
    slurm = ["bash", str(REPO / "tests" / "infra" / "slurm.sh")]
    subprocess.run([*slurm, "controller-stop"], check=True, timeout=60)
    try:
        time.sleep(20)
    finally:
        subprocess.run([*slurm, "controller-start"], check=True, timeout=120)
    for run_id in (small, big):
        steps = finish(project, run_id, timeout_s=300)
        assert all(s.attempt == 1 for s in steps), [(s.name, s.attempt, s.error) for s in steps]
    with project.open_store() as store:
        failures = [e for run_id in (small, big) for e in store.events.list(run_id=run_id) if e.state == "failed"]
    assert not failures, [(e.message, e.state) for e in failures]


def test_cancel_reaches_the_queue_and_the_pilot(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                request: pytest.FixtureRequest) -> None:
    use_host("ci-slurm", monkeypatch)
    in_pilot = submit(project, "testkit.sleep", "ci-slurm", count=1, seconds=600)
    as_job = submit(project, "testkit.sleep", "ci-slurm", count=1, seconds=600, gpus=2)
    request.getfixturevalue("daemon")
    (pilot_step,) = wait_for_steps(project, in_pilot, StepState.RUNNING)
    (job_step,) = wait_for_steps(project, as_job, StepState.RUNNING)
    assert job_step.job_id and job_step.job_id in squeue("-o", "%i")
    with project.open_store() as store:
        cancel_run(store, in_pilot)
        cancel_run(store, as_job)
    deadline = time.monotonic() + 60
    while job_step.job_id in squeue("-o", "%i") or psutil.pid_exists(pilot_step.pid):
        assert time.monotonic() < deadline, "the cancelled steps are still running"
        time.sleep(0.5)
    with project.open_store() as store:
        for run_id in (in_pilot, as_job):
            assert store.runs.get(run_id).run_state is RunState.CANCELLED
            assert {s.state for s in store.steps.list(run_id)} == {"cancelled"}


def test_scheduler_killed_its_orphaned_batch_job_is_cancelled(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                               request: pytest.FixtureRequest) -> None:
    use_host("ci-slurm", monkeypatch)
    run_id = submit(project, "testkit.sleep", "ci-slurm", count=1, seconds=600, gpus=2)
    daemon = request.getfixturevalue("daemon")
    (step,) = wait_for_steps(project, run_id, StepState.RUNNING)
    assert step.job_id in squeue("-o", "%i")
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(30)
    with project.open_store() as store:
        requeued = reconcile_after_crash(store, project_dir=project.path)
        assert requeued == [step.id] and store.steps.get(step.id).step_state is StepState.PENDING
    deadline = time.monotonic() + 30
    while step.job_id in squeue("-o", "%i"):  # a half-done step is not trusted: its job ends
        assert time.monotonic() < deadline, f"orphaned job {step.job_id} still in the queue"
        time.sleep(0.5)
