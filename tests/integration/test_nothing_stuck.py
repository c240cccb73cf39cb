"""Nothing stuck (issue 17, point 3): every wait of a run has a deadline or a liveness check.

End to end, with the scheduler daemon as its own process (as ``orch run`` starts it) and the
real services of tests/infra: the OpenSSH server (an SSH host without the project's file system,
whose dask workers the executor starts over SSH) and SLURM.

- SSH workers killed on the host mid-step, or their SSH connection dropped (the sshd processes
  serving it killed): the step fails as "worker lost", is queued again within seconds, runs on
  workers the executor started again, and the run finishes;
- an SSH host whose workers cannot be started again: reported unreachable (``orch status
  --json``) after its grace period, its waiting step fails with that reason, and it is ok again
  once the workers start;
- a pilot that never connects (its env_setup hangs, or its python does not exist): cancelled
  (gone from squeue), reported in the host's health with the first error line of its log, and
  the run fails with the reason instead of waiting for ever;
- SLURM's controller stopped past the grace period: ``orch status --json`` and ``orch queue
  --json`` say the host is unreachable, since when and why; ok again after the restart, and the
  run finishes without a failure.

The grace periods are short here (``[hosts.X.liveness]``, ``[hosts.X.pilot] connect_timeout``);
the defaults are for real sites.
"""

from __future__ import annotations

import json
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from infra.services import require_service
from test_ssh_workers import env, remote_python, ssh_table  # noqa: F401 - the sshd fixtures

from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import planner
from orchestrator.scheduler.control import wait_for_run
from orchestrator.store import RunRecord, RunState, StepRecord, StepState

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
#: from losing an SSH host's workers to the step's next attempt queued (measured: well under 2 s)
LOST_TO_RETRY_LIMIT_S = 20.0


# ---------------------------------------------------------------------------------------- helpers
def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def submit(project: Project, protocol: str, host: str, **params: object) -> int:
    with project.open_store() as store:
        return planner.create_run(store, project, discover(), protocol, {k: str(v) for k, v in params.items()},
                                  host=host).id


def start_daemon(project: Project, idle_exit_s: float = 3.0) -> subprocess.Popen[bytes]:
    log = open(project.path / "daemon-test.log", "ab")  # noqa: SIM115 - the process keeps it
    return subprocess.Popen([sys.executable, "-m", "orchestrator.scheduler.daemon", str(project.path),
                             "--idle-exit", str(idle_exit_s), "--workers", "1"], stdout=log, stderr=log,
                            start_new_session=True)


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def log_tail(project: Project, lines: int = 40) -> str:
    path = project.path / "daemon-test.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def wait_for(what: Callable[[], Any], timeout_s: float, message: Callable[[], str], every_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = what()
        if found:
            return found
        assert time.monotonic() < deadline, message()
        time.sleep(every_s)


def run_record(project: Project, run_id: int) -> RunRecord:
    with project.open_store() as store:
        return store.runs.get(run_id)


def steps_of(project: Project, run_id: int) -> list[StepRecord]:
    with project.open_store() as store:
        return store.steps.list(run_id)


def running_step(project: Project, run_id: int, timeout_s: float = 180) -> StepRecord:
    def running() -> StepRecord | None:
        return next((s for s in steps_of(project, run_id) if s.step_state is StepState.RUNNING), None)
    step: StepRecord = wait_for(running, timeout_s, lambda: f"no step running: {log_tail(project)}")
    return step


def ended(project: Project, run_id: int, timeout_s: float = 240) -> RunRecord:
    with project.open_store() as store:
        return wait_for_run(store, run_id, timeout_s=timeout_s)


def step_events(project: Project, run_id: int) -> list[tuple[str, str]]:
    with project.open_store() as store:
        return [(e.state or "", e.message or "") for e in store.events.list(run_id=run_id) if e.kind == "step"]


def cli_json(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args, "--json"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.stdout.strip(), done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def health_of(data: dict[str, Any], host: str) -> dict[str, Any] | None:
    return next((h for h in data["hosts"] if h["host"] == host), None)


# ---------------------------------------------------------------------------------------- SSH host
class SwitchablePython:
    """The SSH host's ``python``: a script that runs the real one, or fails (a host whose
    workers cannot be started again) once :meth:`break_it` is called."""

    def __init__(self, real: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="orch-ns-python-", dir="/tmp"))
        self.folder.chmod(0o755)
        self.path = self.folder / "python"
        self.real = real
        self.repair()

    def _write(self, body: str) -> None:
        self.path.write_text(f"#!/bin/bash\n{body}\n")
        self.path.chmod(0o755 | stat.S_IEXEC)

    def repair(self) -> None:
        self._write(f'exec {self.real} "$@"')

    def break_it(self) -> None:
        self._write('echo "orch-test: this python is gone" >&2\nexit 127')


@pytest.fixture
def python_switch(remote_python: str) -> Iterator[SwitchablePython]:  # noqa: F811
    switch = SwitchablePython(remote_python)
    yield switch
    shutil.rmtree(switch.folder, ignore_errors=True)


@pytest.fixture
def ssh_host(env: dict[str, str], python_switch: SwitchablePython, tmp_path: Path,  # noqa: F811
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Project]]:
    """An SSH host without the project's file system (steps staged), 2 workers, short grace periods."""
    name = unique("nsbox")
    work = Path(tempfile.mkdtemp(prefix="orch-ns-work-", dir="/tmp"))
    shutil.chown(work, env["ORCH_TEST_SSH_USER"])
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(f"""
[hosts.{name}]
kind = "ssh"
work_dir = "{work}"
shared_fs = false
cores = 2
workers = 2
python = "{python_switch.path}"

[hosts.{name}.liveness]
unreachable_after = "6s"
no_worker_limit = "60s"
""" + ssh_table(name, env))
    monkeypatch.setenv("ORCH_HOSTS", str(hosts))
    yield name, Project.create(tmp_path / "proj")
    shutil.rmtree(work, ignore_errors=True)


def remote_worker_processes(host: str, user: str) -> list[psutil.Process]:
    """The host's dask worker processes and their wrappers (this machine is the host here)."""
    found = []
    for proc in psutil.process_iter(["username", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["username"] == user and any(arg.startswith(f"{host}-ssh") for arg in cmdline) \
                and "--name" in cmdline:
            found.append(proc)
    return found


def worker_names(processes: list[psutil.Process]) -> set[str]:
    names = set()
    for proc in processes:
        try:
            cmdline = proc.cmdline()
        except psutil.NoSuchProcess:
            continue
        names.add(cmdline[cmdline.index("--name") + 1])
    return names


def sshd_sessions_serving(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The sshd processes of the connection that started ``processes`` ("sshd: USER@notty" and its
    "[priv]" parent), never the listening sshd ("sshd: /usr/sbin/sshd ... [listener]"), which other
    tests share."""
    sessions: dict[int, psutil.Process] = {}
    for proc in processes:
        for parent in proc.parents():
            title = " ".join(parent.cmdline())
            if parent.name() == "sshd" and title.startswith("sshd: ") and "[listener]" not in title \
                    and "/sshd " not in title and parent.ppid() != 1:
                sessions[parent.pid] = parent
    return list(sessions.values())


def kill_all(processes: list[psutil.Process]) -> None:
    for proc in processes:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue


def retried_within(project: Project, step_id: int, attempt: int, timeout_s: float) -> float:
    """Seconds until attempt ``attempt`` of the step is queued or running (fails after ``timeout_s``)."""
    start = time.monotonic()

    def retried() -> bool:
        with project.open_store() as store:
            step = store.steps.get(step_id)
        return step.attempt >= attempt and step.step_state in (StepState.QUEUED, StepState.RUNNING,
                                                                StepState.FINISHED)
    wait_for(retried, timeout_s, lambda: f"attempt {attempt} never came: {log_tail(project)}", every_s=0.05)
    return time.monotonic() - start


def assert_retried_after_a_lost_worker(project: Project, run_id: int, step: StepRecord) -> None:
    run = ended(project, run_id)
    assert run.run_state is RunState.FINISHED, (run.error, log_tail(project))
    (done,) = steps_of(project, run_id)
    assert done.attempt == step.attempt + 1 and done.step_state is StepState.FINISHED
    failures = [message for state, message in step_events(project, run_id) if state == "failed"]
    assert len(failures) == 1 and "worker lost" in failures[0], failures


def test_ssh_workers_killed_mid_step_the_step_is_retried_on_restarted_workers(
        ssh_host: tuple[str, Project], env: dict[str, str]) -> None:  # noqa: F811
    host, project = ssh_host
    run_id = submit(project, "testkit.sleep", host, count=1, seconds=10)
    daemon = start_daemon(project)
    try:
        step = running_step(project, run_id)
        workers = remote_worker_processes(host, env["ORCH_TEST_SSH_USER"])
        assert len(workers) == 4, workers  # 2 wrappers, 2 dask workers
        kill_all(workers)
        seconds = retried_within(project, step.id, step.attempt + 1, LOST_TO_RETRY_LIMIT_S)
        print(f"SSH workers killed -> step queued again in {seconds:.2f} s")
        assert_retried_after_a_lost_worker(project, run_id, step)
    finally:
        stop_daemon(daemon)
    assert f"host '{host}': dask worker" in log_tail(project, 400)  # the loss was logged with its reason


def test_ssh_connection_dropped_mid_step_the_step_is_retried(
        ssh_host: tuple[str, Project], env: dict[str, str]) -> None:  # noqa: F811
    host, project = ssh_host
    run_id = submit(project, "testkit.sleep", host, count=1, seconds=10)
    daemon = start_daemon(project)
    try:
        step = running_step(project, run_id)
        workers = remote_worker_processes(host, env["ORCH_TEST_SSH_USER"])
        sessions = sshd_sessions_serving(workers)
        assert sessions, "no sshd session found above the workers"
        kill_all(sessions)  # the SSH connection drops; the wrappers end their workers
        seconds = retried_within(project, step.id, step.attempt + 1, LOST_TO_RETRY_LIMIT_S)
        print(f"SSH connection dropped -> step queued again in {seconds:.2f} s")
        assert_retried_after_a_lost_worker(project, run_id, step)
        # the new workers run on a new connection, with new names
        wait_for(lambda: len(remote_worker_processes(host, env["ORCH_TEST_SSH_USER"])) == 4, 60,
                 lambda: "the workers were not started again")
        names = worker_names(remote_worker_processes(host, env["ORCH_TEST_SSH_USER"]))
        assert names and all("-ssh-r" in name for name in names), names
    finally:
        stop_daemon(daemon)


def test_ssh_host_whose_workers_cannot_start_again_is_unreachable_then_ok(
        ssh_host: tuple[str, Project], env: dict[str, str], python_switch: SwitchablePython) -> None:  # noqa: F811
    host, project = ssh_host
    run_id = submit(project, "testkit.sleep", host, count=1, seconds=30)
    daemon = start_daemon(project, idle_exit_s=120)
    try:
        running_step(project, run_id)
        python_switch.break_it()
        lost_at = time.monotonic()
        kill_all(sshd_sessions_serving(remote_worker_processes(host, env["ORCH_TEST_SSH_USER"])))
        run = ended(project, run_id, timeout_s=120)
        failed_after = time.monotonic() - lost_at
        assert run.run_state is RunState.FAILED, (run.state, log_tail(project))
        assert "unreachable" in (run.error or "") and "this python is gone" in (run.error or ""), run.error
        assert failed_after < 60, failed_after  # grace 6 s, retries fail at once after it
        status = cli_json("status", str(project.path))
        health = health_of(status, host)
        assert health is not None and health["state"] == "unreachable", status["hosts"]
        assert "could not be started again" in health["message"] and "this python is gone" in health["message"]
        assert health["since"]
        # the host comes back: the next start succeeds (tries go on with a backoff), a new run finishes
        python_switch.repair()
        wait_for(lambda: (health_of(cli_json("status", str(project.path)), host) or {}).get("state") == "ok", 90,
                 lambda: f"the host did not come back: {log_tail(project)}", every_s=1.0)
        again = submit(project, "testkit.sleep", host, count=1, seconds=0.5)
        run = ended(project, again, timeout_s=120)
        assert run.run_state is RunState.FINISHED, (run.error, log_tail(project))
    finally:
        stop_daemon(daemon)


# ---------------------------------------------------------------------------------------- SLURM
def slurm_host(name: str, *, pilot: str = "", host_lines: str = "", liveness: str = "") -> str:
    """A hosts-file table for the test SLURM (as hosts/ci-test.toml's ci-slurm), with extra lines."""
    return f"""
[hosts.{name}]
kind = "slurm"
work_dir = "/tmp/orch-ci/work/slurm"
shared_fs = true
max_jobs = 4
default_queue = "debug"
{host_lines}

[hosts.{name}.queues.debug]
cores = 8
memory = "8000M"
gpus = 2
gpu_request = "--gres=gpu:{{n}}"
walltime = "01:00:00"

[hosts.{name}.pilot]
cores = 1
memory = "1G"
walltime = "00:30:00"
max_pilots = 1
interface = "lo"
{pilot}

[hosts.{name}.liveness]
{liveness}
"""


def use_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hosts_text: str) -> Project:
    for key, value in require_service("slurm").items():
        monkeypatch.setenv(key, value)
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(hosts_text)
    monkeypatch.setenv("ORCH_HOSTS", str(hosts))
    return Project.create(tmp_path / "proj")


def squeue_ids(*args: str) -> list[str]:
    done = subprocess.run(["squeue", "-h", "-o", "%i", *args], capture_output=True, text=True, timeout=30,
                          check=False)
    return done.stdout.split()


HANGING_ENV_SETUP = 'env_setup = ["echo \\"orch-test: module relion/9.9 cannot be loaded\\" >&2", "sleep 600"]'
MISSING_PYTHON = 'python = "/nonexistent/orch-test/bin/python3"'


@pytest.mark.parametrize("case", ["env_setup hangs", "python missing"])
def test_pilot_that_never_connects_is_cancelled_reported_and_fails_the_run(
        case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = unique("ns-pilot-")
    if case == "env_setup hangs":
        text = slurm_host(name, host_lines=HANGING_ENV_SETUP, pilot='connect_timeout = "5s"\nconnect_failures = 2')
        expected = "module relion/9.9 cannot be loaded"
    else:
        text = slurm_host(name, pilot=f'{MISSING_PYTHON}\nconnect_timeout = "5s"\nconnect_failures = 2')
        expected = "/nonexistent/orch-test/bin/python3"
    project = use_slurm(tmp_path, monkeypatch, text)
    job_name = f"orch-pilot-{name}"
    run_id = submit(project, "testkit.sleep", name, count=1, seconds=0.5)
    seen_pilots: set[str] = set()
    daemon = start_daemon(project)
    try:
        def run_ended() -> bool:
            seen_pilots.update(squeue_ids("-n", job_name))
            return run_record(project, run_id).run_state.is_final
        wait_for(run_ended, 180, lambda: f"the run still waits: {log_tail(project)}", every_s=0.5)
        run = run_record(project, run_id)
        assert run.run_state is RunState.FAILED, (run.state, run.error)
        assert "pilots never connect" in (run.error or "") and expected in (run.error or ""), run.error
        with project.open_store() as store:
            health = store.hosts.get(name)
        assert health is not None and health.state.value == "unreachable", health
        print(f"{case}: {health.message}\nrun error: {run.error}")
        assert "never connected" in (health.message or "") and expected in (health.message or ""), health.message
        status = cli_json("status", str(project.path))
        assert (health_of(status, name) or {}).get("state") == "unreachable"
    finally:
        stop_daemon(daemon)
    assert seen_pilots, "no pilot job was seen in squeue"
    wait_for(lambda: not squeue_ids("-n", job_name), 30,
             lambda: f"pilots left in the queue: {squeue_ids('-n', job_name)}")
    if case == "env_setup hangs":  # it ran and was cancelled: the queue says so
        for job_id in seen_pilots:
            done = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30,
                                  check=False)
            assert "JobState=CANCELLED" in done.stdout or not done.stdout.strip(), done.stdout


def test_controller_stopped_past_the_grace_period_shows_the_host_unreachable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = unique("ns-ctl-")
    project = use_slurm(tmp_path, monkeypatch, slurm_host(name, pilot="enabled = false",
                                                          liveness='unreachable_after = "4s"'))
    run_id = submit(project, "testkit.sleep", name, count=1, seconds=25)
    daemon = start_daemon(project)
    slurm = ["bash", str(REPO / "tests" / "infra" / "slurm.sh")]
    try:
        running_step(project, run_id)
        subprocess.run([*slurm, "controller-stop"], check=True, timeout=60)
        try:
            stopped_at = time.monotonic()

            def unreachable() -> dict[str, Any] | None:
                health = health_of(cli_json("status", str(project.path)), name)
                return health if health and health["state"] == "unreachable" else None
            health = wait_for(unreachable, 60, lambda: f"never shown unreachable: {log_tail(project)}", every_s=1.0)
            print(f"controller stopped -> host shown unreachable after {time.monotonic() - stopped_at:.1f} s")
            assert health["since"] and "status command has failed since" in health["message"], health
            queue = cli_json("queue", name, "--project", str(project.path))
            queued = health_of(queue, name)
            assert queued is not None and queued["state"] == "unreachable" and queued["since"] == health["since"]
        finally:
            subprocess.run([*slurm, "controller-start"], check=True, timeout=120)
        wait_for(lambda: (health_of(cli_json("status", str(project.path)), name) or {}).get("state") == "ok", 90,
                 lambda: f"never ok again: {log_tail(project)}", every_s=1.0)
        run = ended(project, run_id, timeout_s=240)
        assert run.run_state is RunState.FINISHED, (run.error, log_tail(project))
        (step,) = steps_of(project, run_id)
        assert step.attempt == 1  # the outage failed nothing
    finally:
        stop_daemon(daemon)
