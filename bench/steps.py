"""Benchmark: scheduler overhead and parallel efficiency against raw dask (and Scipion).

Usage:
    .venv/bin/python bench/steps.py [--quick] [--anchor] [--sizes 100,1000,10000] [--parallel 1000]
                                    [--repeat N] [--memory-k K]

1. Overhead: a run of K no-op steps on a 2-worker LocalCluster, every transition persisted
   in the project store (queued, running, finished, with events), against K bare
   ``client.submit`` no-op tasks in the same invocation. Ours runs as users get it: the local
   host's cluster as the scheduler daemon starts it, TLS with the project's credentials; raw
   dask runs on a plain-TCP LocalCluster of the same shape (two one-thread worker processes).
   ``raw_dask_tls_vs_tcp`` is raw dask on our TLS cluster against raw dask on plain TCP: what
   TLS costs dask itself. With ``--repeat N`` ours and raw dask alternate N times and the
   median ratio is reported with its range (one pair is at the mercy of whatever else the
   machine runs meanwhile).
2. Parallel work: K steps of 50 ms on 2 workers, against the ideal K x 50 ms / 2.
3. ``--anchor``: Scipion's executor on the same work (``../shared/anchors/scipion``): the same
   K no-op steps on two step threads (``--threads 3``: Scipion keeps one for itself), 100
   serial steps, and the 50 ms steps on three step threads.
4. Scheduler memory (RSS of this process, which hosts our scheduler and dask's) after a run
   of ``--memory-k`` no-op steps (0 skips it).

Lines follow DESIGN.md: ``BENCH figure=<name> value=<v> unit=<u> n=<K> [anchor=.. ratio=..]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

# bench/queue.py must not hide the standard library's queue (dask imports it): look in this
# folder last, only for our own helper modules such as anchor.py.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from anchor import run_anchor
from distributed import Client, LocalCluster

from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import planner
from orchestrator.scheduler.engine import Scheduler, SchedulerConfig
from orchestrator.scheduler.executors.local import LocalHostSpec, start_local_cluster
from orchestrator.security import project_tls
from orchestrator.store import RunState


def bench(figure: str, value: float, unit: str, n: int, **extra: object) -> None:
    tail = "".join(f" {k}={v}" for k, v in extra.items())
    print(f"BENCH figure={figure} value={value:.6g} unit={unit} n={n}{tail}", flush=True)


def noop(i: int) -> int:
    return i


def timed_run(scheduler: Scheduler, project: Project, protocol: str, params: dict[str, str]) -> float:
    """Seconds from queuing a run to its end, with the scheduler stepping in this process."""
    store = scheduler.store
    t0 = time.perf_counter()
    run = planner.create_run(store, project, scheduler.registry, protocol, params)
    scheduler.wake()  # what `orch run` does to the daemon (SIGUSR1) once the run is queued
    while True:
        scheduler.step_once(wait_s=0.05)
        if run.id not in scheduler.active and store.runs.get(run.id).run_state.is_final:
            break
    elapsed = time.perf_counter() - t0
    final = store.runs.get(run.id)
    if final.run_state is not RunState.FINISHED:
        raise SystemExit(f"run {final.name} ended {final.state}: {final.error}")
    return elapsed


def raw_dask(client, k: int) -> float:  # noqa: ANN001 - a distributed.Client
    t0 = time.perf_counter()
    futures = [client.submit(noop, i, pure=False) for i in range(k)]
    client.gather(futures)
    elapsed = time.perf_counter() - t0
    del futures
    return elapsed


def plain_tcp_cluster(workers: int) -> tuple[LocalCluster, Client]:
    """Raw dask's cluster: the local host's shape (one-thread worker processes), plain TCP, no credentials."""
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, protocol="tcp://",
                           host="127.0.0.1", dashboard_address="127.0.0.1:0", memory_limit=0,
                           silence_logs=logging.CRITICAL)
    return cluster, Client(cluster, set_as_default=False)


def overhead(scheduler: Scheduler, project: Project, ours_client, raw_client, k: int,  # noqa: ANN001
             repeat: int) -> float:
    """Our no-op run (TLS) against raw dask (plain TCP) at K, alternating ``repeat`` times, and raw
    dask on our TLS cluster once per repeat; returns our median seconds."""
    ours, raws, raws_tls = [], [], []
    for _ in range(repeat):
        ours.append(timed_run(scheduler, project, "testkit.noop", {"count": str(k)}))
        raws.append(raw_dask(raw_client, k))
        raws_tls.append(raw_dask(ours_client, k))
    ratios = sorted(raw / mine for mine, raw in zip(ours, raws, strict=True))
    mine, raw, raw_tls = statistics.median(ours), statistics.median(raws), statistics.median(raws_tls)
    spread = {"range": f"{ratios[0]:.3f}-{ratios[-1]:.3f}", "repeat": repeat} if repeat > 1 else {}
    bench("steps_per_s", k / mine, "steps/s", k, tls="on")
    bench("raw_dask_tasks_per_s", k / raw, "tasks/s", k, tls="off")
    bench("raw_dask_tls_tasks_per_s", k / raw_tls, "tasks/s", k, tls="on")
    bench("raw_dask_tls_vs_tcp", raw / raw_tls, "ratio", k, ratio=f"{raw / raw_tls:.3f}")
    bench("steps_vs_raw_dask", statistics.median(ratios), "ratio", k, ratio=f"{statistics.median(ratios):.3f}",
          tls="on", anchor_tls="off", **spread)
    bench("step_overhead_ms", mine / k * 1e3, "ms", k)
    return mine


def scipion_per_step_s(args: list[str]) -> float | None:
    """Seconds per step of Scipion's executor (bench_steps.py's steps_launch line)."""
    out = run_anchor("bench_steps.py", args, timeout_s=1800)
    for line in (out or "").splitlines():
        match = re.search(r"^scipion steps_launch .*per_step_ms=(\S+)", line)
        if match:
            return float(match.group(1)) / 1e3
    print(out, file=sys.stderr)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="K up to 1,000 and 200 parallel steps")
    parser.add_argument("--sizes", help="comma-separated K for the no-op runs")
    parser.add_argument("--parallel", type=int, help="number of 50 ms steps")
    parser.add_argument("--memory-k", type=int,
                        help="K for the scheduler memory figure (default 100,000; 0 with --quick)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of ours and raw dask per K (median reported)")
    parser.add_argument("--anchor", action="store_true", help="also run Scipion's executor on the same work")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else \
        ([100, 1000] if args.quick else [100, 1000, 10000])
    parallel_k = args.parallel or (200 if args.quick else 1000)
    memory_k = args.memory_k if args.memory_k is not None else (0 if args.quick else 100_000)
    print(f"# load1={os.getloadavg()[0]:.2f} cpus={os.cpu_count()}", flush=True)

    os.environ.setdefault("ORCH_HOME", tempfile.mkdtemp(prefix="orch-bench-home-"))
    project = Project.create(Path(tempfile.mkdtemp(prefix="orch-bench-steps-")) / "bench")
    # as the scheduler daemon starts the local host: TLS with the project's credentials
    cluster, client = start_local_cluster(LocalHostSpec(workers=2), project_tls(project.path).cluster_security())
    raw_cluster, raw_client = plain_tcp_cluster(2)
    print(f"# ours: {cluster.scheduler_address} (TLS); raw dask: {raw_cluster.scheduler_address} (plain TCP)",
          flush=True)
    scheduler = Scheduler(project, client, registry=discover(), config=SchedulerConfig(poll_interval_s=0.2))
    try:
        timed_run(scheduler, project, "testkit.noop", {"count": "10"})  # warm the workers' imports
        raw_dask(client, 100)
        raw_dask(raw_client, 100)
        ours = {k: overhead(scheduler, project, client, raw_client, k, args.repeat) for k in sizes}
        # raw dask's cluster is done: it must not idle beside the 50 ms steps nor count in our memory
        raw_client.close()
        raw_cluster.close()
        wall = timed_run(scheduler, project, "testkit.sleep", {"count": str(parallel_k), "seconds": "0.05"})
        ideal = parallel_k * 0.05 / 2
        bench("parallel_wall_s", wall, "s", parallel_k, ideal=f"{ideal:.2f}")
        bench("parallel_vs_ideal", wall / ideal, "ratio", parallel_k)
        if memory_k:
            timed_run(scheduler, project, "testkit.noop", {"count": str(memory_k)})
            bench("scheduler_rss_mb", psutil.Process().memory_info().rss / 2**20, "MB", memory_k)
    finally:
        client.close()
        cluster.close()
        raw_client.close()  # closing twice is a no-op
        raw_cluster.close()
    if args.anchor:
        for k, mine in ours.items():
            theirs = scipion_per_step_s([str(k), "--mode", "parallel", "--threads", "3"])
            if theirs:
                bench("speedup_vs_scipion_steps", theirs * k / mine, "x", k, anchor=f"{theirs * k:.2f}",
                      ratio=f"{theirs * k / mine:.2f}")
        serial = scipion_per_step_s(["100", "--mode", "serial"])
        if serial:
            bench("scipion_serial_step_ms", serial * 1e3, "ms", 100)
        parallel = scipion_per_step_s([str(parallel_k), "--mode", "parallel", "--threads", "4", "--sleep", "0.05"])
        if parallel:
            theirs = parallel * parallel_k
            bench("speedup_vs_scipion_parallel", theirs / wall, "x", parallel_k, anchor=f"{theirs:.2f}",
                  ratio=f"{theirs / wall:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
