"""Benchmark: steps through SLURM pilot workers against one ``sbatch`` per step, same run.

Usage:
    .venv/bin/python bench/queue.py [--quick] [--steps N] [--pilot-workers W]

Runs on the test SLURM that ``tests/infra/slurm.sh`` starts (one node, 8 CPUs; started here
if it is not running). Both paths run N steps of 0.1 s in the same invocation:

1. pilots: one dask-jobqueue pilot job holding W single-threaded workers (``hosts/ci-test.toml``
   host ``ci-slurm``, pilot resized to W cores), each step a task with ``resources={"cpus": 1}``;
2. sbatch (the Scipion / cryoSPARC way): every step its own batch job (``BatchQueue.submit``,
   a Python process sleeping 0.1 s), followed by the host's one :class:`QueuePoller`.

Figures: both wall times and ``pilot_vs_sbatch_speedup`` (sbatch time / pilot time, target
>= 10x at 1,000 steps); ``squeue_calls`` during the sbatch run and the polls that saw the
most jobs (one squeue per interval whatever the number of jobs); ``first_pilot_step_s``, from
starting the pilot cluster to the first step's result. (The time from ``orch run`` to the
first step on a pilot needs the scheduler wiring: not measured here yet.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# This file is named queue.py, like the standard library's `queue` that dask imports: run as a
# script, its own folder must not shadow it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO / "tests"))

from infra.services import ServiceUnavailable, service_env, start_service  # noqa: E402

from orchestrator.hosts.batch import BatchQueue  # noqa: E402
from orchestrator.hosts.loader import load_hosts_file  # noqa: E402
from orchestrator.hosts.pilots import start_pilot_cluster  # noqa: E402
from orchestrator.hosts.queues.base import JobRequest, JobState  # noqa: E402
from orchestrator.hosts.queues.poller import PollSettings  # noqa: E402
from orchestrator.protocol.steps import Resources  # noqa: E402

STEP_S = 0.1


def bench(figure: str, value: float, unit: str, n: int, **extra: object) -> None:
    tail = "".join(f" {k}={v}" for k, v in extra.items())
    print(f"BENCH figure={figure} value={value:.6g} unit={unit} n={n}{tail}", flush=True)


def step(i: int) -> int:
    time.sleep(STEP_S)
    return i


def run_pilots(host, steps: int, workers: int, work: Path) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    from distributed import Client

    pilot = replace(host.pilot, cores=workers, processes=workers, memory_mb=256 * workers, max_pilots=1)
    t0 = time.perf_counter()
    cluster = start_pilot_cluster(replace(host, pilot=pilot), adapt=False, log_directory=work / "pilot-logs",
                                  extra_kwargs={"local_directory": str(work / "dask")})
    try:
        cluster.scale(jobs=1)
        with Client(cluster) as client:
            first = client.submit(step, -1, resources={"cpus": 1}, pure=False)
            first.result()
            first_step_s = time.perf_counter() - t0
            client.wait_for_workers(workers, timeout=120)
            t1 = time.perf_counter()
            results = client.gather(client.map(step, range(steps), resources={"cpus": 1}, pure=False))
            elapsed = time.perf_counter() - t1
            assert results == list(range(steps))
    finally:
        cluster.close()
    return elapsed, first_step_s


def run_sbatch(host, steps: int, work: Path) -> tuple[float, int, int]:  # type: ignore[no-untyped-def]
    command = [sys.executable, "-c", f"import time; time.sleep({STEP_S})"]
    settings = PollSettings(fast_s=0.5, max_s=5, accounting_grace_s=2)
    largest_poll = 0
    with BatchQueue(host, settings=settings) as queue:
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
        calls = queue.poller.stats.status_queries
    return elapsed, calls, largest_poll


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 steps (under a minute on 2 cores)")
    parser.add_argument("--steps", type=int, help="steps per path (default 1000, 200 with --quick)")
    parser.add_argument("--pilot-workers", type=int, default=8, help="workers in the pilot job (default 8)")
    args = parser.parse_args()
    steps = args.steps or (200 if args.quick else 1000)
    try:  # reuse a running instance as it is (start would switch its accounting mode back to basic)
        env = service_env("slurm")
    except ServiceUnavailable:
        env = start_service("slurm")
    os.environ.update(env)
    host = load_hosts_file(REPO / "hosts" / "ci-test.toml")["ci-slurm"]
    with tempfile.TemporaryDirectory(prefix="orch-bench-queue-", dir="/tmp") as tmp:
        work = Path(tmp)
        pilot_s, first_step_s = run_pilots(host, steps, args.pilot_workers, work)
        bench("pilot_wall_time", pilot_s, "s", steps, workers=args.pilot_workers)
        bench("first_pilot_step_s", first_step_s, "s", 1)
        sbatch_s, calls, largest = run_sbatch(host, steps, work)
        bench("sbatch_wall_time", sbatch_s, "s", steps)
        bench("pilot_vs_sbatch_speedup", sbatch_s / pilot_s, "x", steps, anchor=f"{sbatch_s:.3f}",
              ratio=f"{sbatch_s / pilot_s:.3f}")
        bench("squeue_calls", calls, "calls", steps, max_jobs_per_call=largest,
              calls_per_minute=f"{calls / (sbatch_s / 60):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
