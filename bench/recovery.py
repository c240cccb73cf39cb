"""Benchmark: from losing a host's workers to the step's retry (issue 17, "nothing stuck").

Usage:
    .venv/bin/python bench/recovery.py [--quick] [--repeats N] [--keep]

Runs against the test services of ``tests/infra`` (the OpenSSH server and SLURM; started here
if they are not running), with the scheduler daemon as its own process, as ``orch run``
starts it. One run of one step that sleeps for minutes is queued on each host; every time the
step runs, its workers are lost, ``--repeats`` times (3; 1 with ``--quick``), then the run is
cancelled. The cases:

1. ``ssh_workers``: an SSH host without the project's file system (2 workers, started over
   SSH by the scheduler); its dask worker processes (and their wrappers) are killed with
   SIGKILL on the host (this machine);
2. ``ssh_connection``: the same host; the sshd processes serving the workers' SSH connection
   are killed (the connection drops; the workers end with it);
3. ``pilot``: a SLURM host (``hosts/ci-test.toml``'s ``ci-slurm``, one pilot of one worker); the
   pilot job the step runs in is cancelled with ``scancel``.

The times come from the project store, read every 20 ms: from the loss to the step's next
attempt recorded QUEUED (the retry: the scheduler recorded the failure and queued it again)
and to that attempt RUNNING (on workers started again, or in a new pilot).

Figures (median over the repeats; ``n`` = losses):

- ``lost_host_to_retry_s``: the slowest of the three cases' median (the issue's figure);
- ``lost_<case>_to_retry_s`` for each case;
- ``lost_<case>_to_rerun_s``: to the retry RUNNING (includes starting the workers again: a new
  SSH connection, probe and workers; for the pilot, dask-jobqueue's 15 s before it replaces a
  lost pilot, and the new pilot's start).

``--keep`` keeps the temporary folder (projects, daemon logs) and prints where it is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "integration"))

import psutil  # noqa: E402
from infra.services import start_service  # noqa: E402
from test_ssh_workers import (  # noqa: E402
    _let_others_traverse,
    _project_interpreter,
    _venv_for_the_ssh_user,
    ssh_table,
)

from orchestrator.plugins import discover  # noqa: E402
from orchestrator.project import Project  # noqa: E402
from orchestrator.scheduler import planner  # noqa: E402
from orchestrator.scheduler.control import cancel_run  # noqa: E402
from orchestrator.store import StepRecord, StepState  # noqa: E402

SSH_HOST = "bench-recovery-ssh"
SLURM_HOST = "bench-recovery-slurm"
STEP_S = 3600
POLL_S = 0.02


def bench(figure: str, value: float, unit: str, n: int, **extra: object) -> None:
    tail = "".join(f" {k}={v}" for k, v in extra.items())
    print(f"BENCH figure={figure} value={value:.6g} unit={unit} n={n}{tail}", flush=True)


def hosts_text(env: dict[str, str], python: str, work_dir: Path) -> str:
    return f"""
[hosts.{SSH_HOST}]
kind = "ssh"
work_dir = "{work_dir}"
shared_fs = false
cores = 2
workers = 2
python = "{python}"
{ssh_table(SSH_HOST, env)}
[hosts.{SLURM_HOST}]
kind = "slurm"
work_dir = "/tmp/orch-ci/work/slurm"
shared_fs = true
max_jobs = 4
default_queue = "debug"

[hosts.{SLURM_HOST}.queues.debug]
cores = 8
memory = "8000M"
gpus = 2
gpu_request = "--gres=gpu:{{n}}"
walltime = "01:00:00"

[hosts.{SLURM_HOST}.pilot]
cores = 1
memory = "1G"
walltime = "01:00:00"
max_pilots = 1
interface = "lo"
"""


def remote_python(root: Path) -> str:
    """A venv of this interpreter, with this project's packages, that the SSH user can run."""
    interpreter = _project_interpreter()
    python = _venv_for_the_ssh_user(root, "venv", with_project=True)
    import sysconfig

    for needed in (Path(sysconfig.get_paths()["purelib"]), REPO, Path(sys.base_prefix), interpreter.parent):
        _let_others_traverse(needed)
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o055)
    root.chmod(0o755)
    return str(python)


class StepClock:
    """The one step of a run, read from the store every :data:`POLL_S`."""

    def __init__(self, project: Project, run_id: int) -> None:
        self.store = project.open_store()
        self.run_id = run_id

    def step(self) -> StepRecord | None:
        steps = self.store.steps.list(self.run_id)
        return steps[0] if steps else None

    def until(self, condition: Callable[[StepRecord], bool], timeout_s: float, what: str) -> StepRecord:
        deadline = time.monotonic() + timeout_s
        while True:
            step = self.step()
            if step is not None and condition(step):
                return step
            if time.monotonic() > deadline:
                raise SystemExit(f"bench/recovery.py: {what} did not happen within {timeout_s:.0f} s (step: {step})")
            time.sleep(POLL_S)

    def close(self) -> None:
        self.store.close()


def ssh_worker_processes(user: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["username", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["username"] == user and "--name" in cmdline and any(a.startswith(f"{SSH_HOST}-ssh")
                                                                         for a in cmdline):
            found.append(proc)
    return found


def sshd_sessions(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The sshd processes of the workers' connection, never the listening sshd."""
    sessions = {}
    for proc in processes:
        for parent in proc.parents():
            title = " ".join(parent.cmdline())
            if parent.name() == "sshd" and title.startswith("sshd: ") and "[listener]" not in title \
                    and parent.ppid() != 1:
                sessions[parent.pid] = parent
    return list(sessions.values())


def kill(processes: list[psutil.Process]) -> None:
    for proc in processes:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue


def measure(project: Project, host: str, lose: Callable[[StepRecord], None], repeats: int,
            rerun_timeout_s: float) -> tuple[list[float], list[float]]:
    """Queue a long step on ``host``; ``repeats`` times: once it runs, ``lose`` its workers and
    time the retry (queued) and the rerun (running). The run is cancelled at the end."""
    with project.open_store() as store:
        run_id = planner.create_run(store, project, discover(), "testkit.sleep",
                                    {"count": "1", "seconds": str(STEP_S)}, host=host).id
    clock = StepClock(project, run_id)
    retries: list[float] = []
    reruns: list[float] = []
    try:
        step = clock.until(lambda s: s.step_state is StepState.RUNNING, 300, f"the first attempt on {host} running")
        for _ in range(repeats):
            attempt = step.attempt

            def retried(s: StepRecord, lost: int = attempt) -> bool:
                return s.attempt > lost and s.step_state in (StepState.QUEUED, StepState.RUNNING)

            def rerunning(s: StepRecord, lost: int = attempt) -> bool:
                return s.attempt > lost and s.step_state is StepState.RUNNING

            time.sleep(1.0)  # let the step settle in
            lost_at = time.monotonic()
            lose(step)
            clock.until(retried, 120, f"the retry on {host}")
            retries.append(time.monotonic() - lost_at)
            step = clock.until(rerunning, rerun_timeout_s, f"the retry running on {host}")
            reruns.append(time.monotonic() - lost_at)
            print(f"# {host}: attempt {attempt} lost -> retry queued {retries[-1]:.2f} s, running {reruns[-1]:.2f} s",
                  flush=True)
    finally:
        cancel_run(clock.store, run_id)
        clock.close()
    return retries, reruns


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one loss per case")
    parser.add_argument("--repeats", type=int, default=None, help="losses per case (default 3; 1 with --quick)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    ssh_env = start_service("sshd")
    slurm_env = start_service("slurm")
    os.environ.update(slurm_env)
    user = ssh_env["ORCH_TEST_SSH_USER"]
    root = Path(tempfile.mkdtemp(prefix="orch-bench-recovery-"))
    shared = Path(tempfile.mkdtemp(prefix="orch-bench-recovery-host-", dir="/tmp"))  # what the SSH user reads
    shared.chmod(0o755)
    work_dir = shared / "work"
    work_dir.mkdir()
    shutil.chown(work_dir, user)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        python = remote_python(shared)
        hosts = root / "hosts.toml"
        hosts.write_text(hosts_text(ssh_env, python, work_dir))
        os.environ["ORCH_HOSTS"] = str(hosts)
        project = Project.create(root / "proj")
        log_path = root / "daemon.log"
        with open(log_path, "ab") as log:
            daemon = subprocess.Popen([sys.executable, "-m", "orchestrator.scheduler.daemon", str(project.path),
                                       "--idle-exit", "0", "--workers", "1", "--retries", str(repeats + 5)],
                                      stdout=log, stderr=log, cwd=REPO, start_new_session=True)
        cases: dict[str, tuple[list[float], list[float]]] = {}
        cases["ssh_workers"] = measure(project, SSH_HOST, lambda _s: kill(ssh_worker_processes(user)), repeats, 120)
        cases["ssh_connection"] = measure(project, SSH_HOST, lambda _s: kill(sshd_sessions(ssh_worker_processes(user))),
                                          repeats, 120)

        def scancel(step: StepRecord) -> None:
            subprocess.run(["scancel", str(step.job_id)], check=True, timeout=30)
        cases["pilot"] = measure(project, SLURM_HOST, scancel, repeats, 180)
        medians = {}
        for case, (retries, reruns) in cases.items():
            medians[case] = statistics.median(retries)
            bench(f"lost_{case}_to_retry_s", medians[case], "s", len(retries), worst=f"{max(retries):.3f}")
            bench(f"lost_{case}_to_rerun_s", statistics.median(reruns), "s", len(reruns),
                  worst=f"{max(reruns):.3f}")
        worst_case = max(medians, key=lambda case: medians[case])
        bench("lost_host_to_retry_s", medians[worst_case], "s", sum(len(r) for r, _ in cases.values()),
              slowest_case=worst_case)
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()
        left = subprocess.run(["squeue", "-h", "-n", f"orch-pilot-{SLURM_HOST}", "-o", "%i"], capture_output=True,
                              text=True, timeout=30, check=False).stdout.split()
        if left:
            subprocess.run(["scancel", *left], check=False, timeout=30)
        if args.keep:
            print(f"# kept {root} and {shared}")
        else:
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(shared, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
