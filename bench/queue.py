"""Benchmark: a run's steps through SLURM pilot workers against one batch job per step.

Usage:
    .venv/bin/python bench/queue.py [--quick] [--steps N] [--pilot-workers W] [--no-bare] [--keep]

Runs on the test SLURM that ``tests/infra/slurm.sh`` starts (one node, 8 CPUs; started here
if it is not running). Every path runs N steps of 0.1 s, in the same invocation:

1. **pilots**, through the product: a project in a temporary folder, a hosts file
   (``ORCH_HOSTS``) with host ``ci-slurm-bench``, which is ``hosts/ci-test.toml``'s ``ci-slurm``
   with a pilot of W single-core workers (cores = processes = W, 512 MB each,
   ``max_pilots = 1``); one ``testkit.sleep`` run, ``count=N seconds=0.1``, queued on that host
   as ``orch run PROJECT testkit.sleep count=N seconds=0.1 --host ci-slurm-bench`` does
   (``planner.create_run``), then the scheduler daemon
   (``python -m orchestrator.scheduler.daemon PROJECT --idle-exit 3 --workers 1``), which starts
   the pilot and runs the steps in it;
2. **sbatch**, the same run the Scipion / cryoSPARC way: host ``ci-slurm-bench-jobs``, the same
   cluster with ``[pilot] enabled = false`` and no ``max_jobs`` (SLURM alone decides how many
   run at once, as for the bare jobs below), so the same scheduler sends every step as its own
   batch job (``python -m orchestrator.worker.batch_job``: the step runner starts in the
   job, runs the step and records it in the project store);
3. **bare sbatch** (the floor of any job-per-step design): every step its own batch job that
   only sleeps (``BatchQueue.submit`` of ``python -c "import time; time.sleep(0.1)"``, nothing
   imported, nothing recorded), all submitted at once and followed by the host's one
   :class:`QueuePoller`. ``--no-bare`` skips it (and the ``squeue_calls`` figure).

Figures:

- ``pilot_wall_time``: from queueing the run to its ``finished_at`` in the store (daemon
  start, pilot job, steps); extras: workers and pilot jobs the steps ran in, the busiest and
  idlest worker's step count, and ``steps_span_s`` (first step start to last step end);
- ``first_pilot_step_s``: from queueing the run to the earliest ``started_at`` of its steps;
- ``sbatch_wall_time`` (path 2, measured like path 1) and ``pilot_vs_sbatch_speedup``
  (sbatch time / pilot time, the issue's target >= 10x at 1,000 steps);
- ``bare_sbatch_wall_time`` and ``pilot_vs_bare_sbatch_speedup`` (path 3);
- every wall time comes with ``cpu_s``, the CPU seconds the whole machine spent meanwhile
  (the test node's 8 CPUs are 2 real cores here: a path that needs CPU per step is held
  back by them more than one that sleeps);
- ``squeue_calls`` during path 3, with the most jobs one poll covered (one squeue per
  interval whatever the number of jobs).

The daemons are stopped and the bench's pilot jobs (``orch-pilot-ci-slurm-bench``) cancelled
at the end, on errors too. ``--keep`` keeps the temporary folder (projects, daemon logs, pilot
logs, job folders) and prints where it is.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# This file is named queue.py, like the standard library's `queue` that dask imports: run as a
# script, its own folder must not shadow it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO / "tests"))

import psutil  # noqa: E402
from infra.services import ServiceUnavailable, service_env, start_service  # noqa: E402

from orchestrator.hosts.config.loader import load_hosts_file  # noqa: E402
from orchestrator.hosts.config.model import HostConfig  # noqa: E402
from orchestrator.hosts.queues.base import JobRequest, JobState  # noqa: E402
from orchestrator.hosts.queues.jobs import BatchQueue  # noqa: E402
from orchestrator.hosts.queues.poller import PollSettings  # noqa: E402
from orchestrator.plugins import discover  # noqa: E402
from orchestrator.project import Project  # noqa: E402
from orchestrator.protocol.steps import Resources  # noqa: E402
from orchestrator.scheduler import planner  # noqa: E402
from orchestrator.scheduler.control import wait_for_run  # noqa: E402
from orchestrator.store import RunState  # noqa: E402

CI_HOSTS = REPO / "hosts" / "ci-test.toml"
CI_HOST = "ci-slurm"
BENCH_HOST = "ci-slurm-bench"
BENCH_JOBS_HOST = "ci-slurm-bench-jobs"
WORKER_MEMORY_MB = 512  # per pilot worker: a dask worker with the orchestrator imported, plus a sleeping step
STEP_S = 0.1


def bench(figure: str, value: float, unit: str, n: int, **extra: object) -> None:
    tail = "".join(f" {k}={v}" for k, v in extra.items())
    print(f"BENCH figure={figure} value={value:.6g} unit={unit} n={n}{tail}", flush=True)


# ---------------------------------------------------------------------------- pilots, through the scheduler

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {type(value).__name__}")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_text(table: dict[str, Any], prefix: tuple[str, ...] = ()) -> str:
    """Tables of scalars and lists as TOML (enough for a hosts file; tomllib only reads)."""
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    sections = []
    if scalars or (prefix and not tables):
        header = ["[" + ".".join(_toml_key(k) for k in prefix) + "]"] if prefix else []
        sections.append("\n".join(header + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars.items()]))
    sections += [toml_text(v, (*prefix, k)) for k, v in tables.items()]
    return "\n\n".join(s.rstrip("\n") for s in sections) + "\n"


def write_bench_hosts(path: Path, workers: int, work_dir: Path) -> tuple[HostConfig, HostConfig]:
    """``ci-slurm`` as ``BENCH_HOST`` (one pilot of ``workers`` single-core workers) and as
    ``BENCH_JOBS_HOST`` (no pilots, no job limit: every step its own batch job)."""
    data = tomllib.loads(CI_HOSTS.read_text())["hosts"][CI_HOST]
    queue_mb = load_hosts_file(CI_HOSTS)[CI_HOST].queue().memory_mb
    memory_mb = min(WORKER_MEMORY_MB * workers, queue_mb or WORKER_MEMORY_MB * workers)
    pilots = {**data, "description": f"bench/queue.py: {CI_HOST} with one pilot of {workers} workers",
              "work_dir": str(work_dir),
              "pilot": {**data.get("pilot", {}), "cores": workers, "processes": workers, "memory": f"{memory_mb}M",
                        "min_pilots": 0, "max_pilots": 1}}
    jobs = {k: v for k, v in data.items() if k not in ("pilot", "max_jobs")}
    jobs = {**jobs, "description": f"bench/queue.py: {CI_HOST}, every step its own batch job",
            "work_dir": str(work_dir), "pilot": {"enabled": False}}
    path.write_text(toml_text({"hosts": {BENCH_HOST: pilots, BENCH_JOBS_HOST: jobs}}))
    hosts = load_hosts_file(path)  # the loader's checks, e.g. W above the node's cores
    return hosts[BENCH_HOST], hosts[BENCH_JOBS_HOST]


def pilot_job_ids(host: HostConfig) -> list[str]:
    done = subprocess.run(["squeue", "-h", "-n", f"orch-pilot-{host.name}", "-o", "%i"], capture_output=True,
                          text=True, timeout=30, check=False)
    return done.stdout.split()


def start_daemon(project: Project, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        # cwd: not bench/, whose queue.py would hide the standard library's from ``-m``
        return subprocess.Popen([sys.executable, "-m", "orchestrator.scheduler.daemon", str(project.path),
                                 "--idle-exit", "3", "--workers", "1"], stdout=log, stderr=log, cwd=REPO,
                                start_new_session=True)


def stop_daemon(proc: subprocess.Popen[bytes], idle_wait_s: float) -> None:
    """Let the daemon idle out (it closes its pilots then), else SIGTERM, else kill its group."""
    try:
        proc.wait(idle_wait_s)
        return
    except subprocess.TimeoutExpired:
        proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        print(f"note: scheduler daemon {proc.pid} ignored SIGTERM for 60 s; killed", file=sys.stderr)
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the daemon and its local workers
        proc.wait()


def cancel_left_pilots(host: HostConfig, wait_s: float = 30) -> None:
    """Wait for the daemon's own cancel of its pilots, then scancel what is still queued."""
    deadline = time.monotonic() + wait_s
    while (jobs := pilot_job_ids(host)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if jobs:
        print(f"note: pilot job(s) {' '.join(jobs)} outlived the scheduler by {wait_s:.0f} s; scancel",
              file=sys.stderr)
        subprocess.run(["scancel", *jobs], check=False, timeout=30)


def machine_cpu_s() -> float:
    """CPU seconds this machine has spent so far, all processes (the paths' cost in CPU)."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0)


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _utc(moment: datetime | None) -> datetime:
    """A store time as an aware UTC datetime (SQLite gives them back naive, in UTC)."""
    if moment is None:
        raise SystemExit("a finished run or step without its time in the store")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class RunResult:
    wall_s: float
    first_step_s: float
    steps_span_s: float
    workers_used: int
    jobs: int  # the batch jobs the steps ran in (pilots, or one per step)
    steps_per_worker: tuple[int, int]  # fewest, most
    cpu_s: float  # CPU seconds of the whole machine from queueing to the end


def run_through_scheduler(host: HostConfig, hosts_file: Path, steps: int, work: Path) -> RunResult:
    """One ``testkit.sleep`` run of ``steps`` steps on ``host``, queued and run by a daemon."""
    os.environ["ORCH_HOSTS"] = str(hosts_file)  # for create_run's host check, and the daemon inherits it
    project = Project.create(work / f"project-{host.name}")
    log_path = project.path / "daemon-bench.log"
    registry = discover()
    with project.open_store() as store:
        cpu_at_start = machine_cpu_s()
        queued_at = datetime.now(UTC)
        run = planner.create_run(store, project, registry, "testkit.sleep",
                                 {"count": str(steps), "seconds": str(STEP_S)}, host=host.name)
    daemon = start_daemon(project, log_path)
    finished = False
    try:
        with project.open_store() as store:
            final = wait_for_run(store, run.id, timeout_s=300 + steps * 3, poll_s=0.05)
            if final.run_state is not RunState.FINISHED:
                raise SystemExit(f"run {final.name} on {host.name} is {final.state} ({final.error}); daemon log:\n"
                                 f"{log_tail(log_path)}")
            records = store.steps.list(run.id)
            cpu_s = machine_cpu_s() - cpu_at_start
        finished = True
    finally:
        stop_daemon(daemon, idle_wait_s=30 if finished else 0)
        cancel_left_pilots(host)
    per_worker = Counter(s.worker for s in records)
    first_start = min(_utc(s.started_at) for s in records)
    last_end = max(_utc(s.finished_at) for s in records)
    return RunResult(
        wall_s=(_utc(final.finished_at) - queued_at).total_seconds(),
        first_step_s=(first_start - queued_at).total_seconds(),
        steps_span_s=(last_end - first_start).total_seconds(),
        workers_used=len(per_worker),
        jobs=len({(s.result or {}).get("job") for s in records}),
        steps_per_worker=(min(per_worker.values()), max(per_worker.values())),
        cpu_s=cpu_s,
    )


# ---------------------------------------------------------------------------- bare jobs, one per step

def run_bare_sbatch(host, steps: int, work: Path) -> tuple[float, int, int, float]:  # type: ignore[no-untyped-def]
    command = [sys.executable, "-c", f"import time; time.sleep({STEP_S})"]
    settings = PollSettings(fast_s=0.5, max_s=5, accounting_grace_s=2)
    largest_poll = 0
    with BatchQueue(host, settings=settings) as queue:
        cpu_at_start = machine_cpu_s()
        t0 = time.perf_counter()
        jobs = [queue.submit(JobRequest(f"step{i}", command, str(work / "jobs" / f"s{i:05d}"), Resources()))
                for i in range(steps)]
        open_jobs = {j.job_id for j in jobs}
        while open_jobs:
            largest_poll = max(largest_poll, len(open_jobs))
            for job_id in list(open_jobs):
                status = queue.poller.status(job_id)
                if status is not None and status.is_final:
                    if status.state is not JobState.DONE:
                        raise SystemExit(f"batch job {job_id} ended {status.state}: {status.reason}")
                    open_jobs.discard(job_id)
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
        cpu_s = machine_cpu_s() - cpu_at_start
        calls = queue.poller.stats.status_queries
    return elapsed, calls, largest_poll, cpu_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 steps (a few minutes on 2 cores)")
    parser.add_argument("--steps", type=int, help="steps per path (default 1000, 200 with --quick)")
    parser.add_argument("--pilot-workers", type=int, default=8, help="workers in the pilot job (default 8)")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare sleep-only jobs (path 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (projects, logs)")
    args = parser.parse_args()
    steps = args.steps or (200 if args.quick else 1000)
    try:  # reuse a running instance as it is (start would switch its accounting mode back to basic)
        env = service_env("slurm")
    except ServiceUnavailable:
        env = start_service("slurm")
    os.environ.update(env)
    host = load_hosts_file(CI_HOSTS)[CI_HOST]
    work = Path(tempfile.mkdtemp(prefix="orch-bench-queue-", dir="/tmp"))
    try:
        pilot_host, jobs_host = write_bench_hosts(work / "hosts.toml", args.pilot_workers, work / "host-work")
        load1 = os.getloadavg()[0]
        pilot = run_through_scheduler(pilot_host, work / "hosts.toml", steps, work)
        fewest, most = pilot.steps_per_worker
        bench("pilot_wall_time", pilot.wall_s, "s", steps, workers=args.pilot_workers,
              workers_used=pilot.workers_used, pilot_jobs=pilot.jobs, steps_per_worker=f"{fewest}-{most}",
              steps_span_s=f"{pilot.steps_span_s:.3f}", cpu_s=f"{pilot.cpu_s:.1f}", load1=f"{load1:.2f}")
        bench("first_pilot_step_s", pilot.first_step_s, "s", 1)
        load1 = os.getloadavg()[0]
        jobs = run_through_scheduler(jobs_host, work / "hosts.toml", steps, work)
        bench("sbatch_wall_time", jobs.wall_s, "s", steps, jobs=jobs.jobs, first_step_s=f"{jobs.first_step_s:.3f}",
              steps_span_s=f"{jobs.steps_span_s:.3f}", cpu_s=f"{jobs.cpu_s:.1f}", load1=f"{load1:.2f}")
        bench("pilot_vs_sbatch_speedup", jobs.wall_s / pilot.wall_s, "x", steps, anchor=f"{jobs.wall_s:.3f}",
              ratio=f"{jobs.wall_s / pilot.wall_s:.3f}")
        if not args.no_bare:
            load1 = os.getloadavg()[0]
            bare_s, calls, largest, bare_cpu_s = run_bare_sbatch(host, steps, work)
            bench("bare_sbatch_wall_time", bare_s, "s", steps, cpu_s=f"{bare_cpu_s:.1f}", load1=f"{load1:.2f}")
            bench("pilot_vs_bare_sbatch_speedup", bare_s / pilot.wall_s, "x", steps, anchor=f"{bare_s:.3f}",
                  ratio=f"{bare_s / pilot.wall_s:.3f}")
            bench("squeue_calls", calls, "calls", steps, max_jobs_per_call=largest,
                  calls_per_minute=f"{calls / (bare_s / 60):.1f}")
    finally:
        if args.keep:
            print(f"note: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
