"""Benchmark: how long the ``orch`` command takes to answer, as a user types it.

Usage:
    .venv/bin/python bench/cli.py [--quick] [--runs 1000] [--repeat 7]

Runs the real ``orch`` executable of this environment as a subprocess and reports the median
wall time of several runs of:

- ``orch --help`` (``cli_help_s``): start-up alone, every command's parser built;
- ``orch status PROJECT`` (``cli_status_1000_runs_s``) on a project of 1,000 runs of 8 steps
  each (finished, failed, running, queued), built directly through the project store so the
  set-up takes seconds, not a scheduler's hours.

``--quick`` repeats each command 3 times instead of 7 (the project keeps its 1,000 runs: the
figure is about that size). Lines follow DESIGN.md:
``BENCH figure=<name> value=<seconds> unit=s n=<size>``.

``orch`` runs as it does for a user: Python may cache the modules' bytecode (pip compiles it
when it installs a package, an editable install writes it on the first run), so
``PYTHONDONTWRITEBYTECODE`` is dropped from its environment and an untimed first run of each
command fills the cache. ``--no-bytecode-cache`` keeps it, to see the cost of compiling too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.project import Project
from orchestrator.store import ProjectStore, QueuedAttempt, RunState

STEPS_PER_RUN = 8
# the states the runs are left in, in turn: mostly history, some live work
RUN_MIX = (RunState.FINISHED, RunState.FINISHED, RunState.FINISHED, RunState.FAILED, RunState.RUNNING,
           RunState.QUEUED)


def bench(figure: str, value: float, unit: str, n: int) -> None:
    print(f"BENCH figure={figure} value={value:.4g} unit={unit} n={n}", flush=True)


def orch_executable() -> Path:
    """The ``orch`` script next to the Python running this benchmark (the project's venv)."""
    path = Path(sys.executable).parent / "orch"
    if not path.exists():
        raise SystemExit(f"{path}: no orch executable next to {sys.executable}; run with .venv/bin/python")
    return path


def add_run(store: ProjectStore, index: int) -> None:
    """One run and its steps, walked through the store's lifecycle to where a scheduler would have left it."""
    state = RUN_MIX[index % len(RUN_MIX)]
    lifecycle = store.lifecycle
    run = store.runs.create("testkit.fanout", {"count": STEPS_PER_RUN}, name=f"fanout-{index}")
    ids = list(store.steps.add(run.id, [{"name": f"part_{i}", "func": "orch_testkit.steps:part_step"}
                                        for i in range(STEPS_PER_RUN)]).values())
    lifecycle.queue_run(run.id)
    if state is RunState.QUEUED:
        return
    lifecycle.start_run(run.id)
    lifecycle.queue_steps([QueuedAttempt(step_id, 1, "local") for step_id in ids])
    for i, step_id in enumerate(ids):
        if state is RunState.RUNNING and i % 2 == 0:
            lifecycle.start_step(step_id, 1, host="local", pid=4000 + i)
        elif state is RunState.FAILED and i == 0:
            lifecycle.fail_step(step_id, 1, "ValueError: bad input", duration_s=0.5)
        else:
            lifecycle.finish_step(step_id, 1, {"ok": True}, duration_s=0.5)
    if state is RunState.FINISHED:
        lifecycle.finish_run(run.id, [])
    elif state is RunState.FAILED:
        lifecycle.fail_run(run.id, "step 'part_0' failed: ValueError: bad input")


def build_project(folder: Path, runs: int) -> Project:
    project = Project.create(folder / "bench-cli")
    with project.open_store() as store:
        for index in range(runs):
            add_run(store, index)
    return project


def median_seconds(command: list[str], repeat: int, env: dict[str, str]) -> float:
    """Median wall time of ``command`` (one untimed run first: the page cache is warm for all)."""
    times = []
    for attempt in range(repeat + 1):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
        if attempt:
            times.append(elapsed)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument("--runs", type=int, default=1000, help="runs in the status project (default 1000)")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs of each command")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE as it is (modules are compiled on every run)")
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 7)
    orch = str(orch_executable())
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "ORCH_HOME": str(folder / "orch-home"), "COLUMNS": "160"}
        if not args.no_bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["ORCH_HOME"] = env["ORCH_HOME"]  # the project list of this benchmark, not the user's
        bench("cli_help_s", median_seconds([orch, "--help"], repeat, env), "s", 1)
        started = time.perf_counter()
        project = build_project(folder, args.runs)
        print(f"# built {args.runs} runs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        bench(f"cli_status_{args.runs}_runs_s", median_seconds([orch, "status", str(project.path)], repeat, env),
              "s", args.runs)


if __name__ == "__main__":
    main()
