"""Wall time of each protocol of the native pipeline on the demo data set (issue 6).

Runs ``examples/pipeline.json`` (the pipeline ``make demo`` runs) in a temporary project
through the real scheduler (``daemon.serve``, a LocalCluster with one worker per core),
then reads the store and prints, per run:

    BENCH figure=<run>_s value=<seconds> unit=s n=<items>          run start to end
    BENCH figure=<run>_steps_s value=<seconds> unit=s n=<steps>    sum of its steps' durations

plus the whole pipeline's wall time and the resolutions reached (half maps at FSC 0.143,
against the ground truth at FSC 0.5). Runs whose inputs are ready at the same time share
the workers (classify2d and refine3d run side by side), so a run's wall time includes
waiting; ``_steps_s`` is the work itself. ``--quick``: a tenth of the data (under a minute
on two idle cores). A RELION side-by-side of the refinement is to be added here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/ holds a script called queue.py, which would shadow the standard library's queue
# (dask imports it) for every script run from here: keep this folder off the import path.
# Set before the cluster starts, so its worker processes inherit the cleaned path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from orchestrator.plugins import discover  # noqa: E402 - after the sys.path fix above
from orchestrator.project import Project  # noqa: E402 - after the sys.path fix above
from orchestrator.scheduler import daemon  # noqa: E402 - after the sys.path fix above
from orchestrator.scheduler.control import submit  # noqa: E402 - after the sys.path fix above
from orchestrator.store import RunState  # noqa: E402 - after the sys.path fix above

PIPELINE = Path(__file__).resolve().parent.parent / "examples" / "pipeline.json"
QUICK = {"simulate": {"n_micrographs": 4, "particles_per_micrograph": 40},
         "classify2d": {"n_classes": 3, "iterations": 3},
         "refine3d": {"max_iterations": 4}}


def bench(line: str, **fields: Any) -> None:
    print("BENCH " + line + "".join(f" {k}={v}" for k, v in fields.items()), flush=True)


def run_pipeline(folder: Path, quick: bool, workers: int | None) -> tuple[Project, float]:
    runs = json.loads(PIPELINE.read_text())["runs"]
    project = Project.create(folder / "project")
    registry = discover()
    with project.open_store() as store:
        for run in runs:
            params = {**run["params"], **(QUICK.get(run["name"], {}) if quick else {})}
            submit(project, run["protocol"], params, name=run["name"], store=store, registry=registry,
                   start_daemon=False)
    started = time.perf_counter()
    if daemon.serve(project, idle_exit_s=1.0, workers=workers) != 0:
        raise SystemExit(f"another scheduler holds {project.path}")
    return project, time.perf_counter() - started


def report(project: Project, wall_s: float) -> int:
    with project.open_store() as store:
        runs = store.runs.list()
        failed = [run.name for run in runs if run.run_state is not RunState.FINISHED]
        for run in runs:
            if run.started_at is None or run.finished_at is None:
                continue
            steps = store.steps.list(run.id)
            values = {o.name: (o.value or {}) for o in store.outputs.list(run.id)}
            items = next((v.get("size") for v in values.values() if isinstance(v.get("size"), int)), None)
            size = {"n": items} if items is not None else {}
            bench(f"figure={run.name}_s value={(run.finished_at - run.started_at).total_seconds():.2f} unit=s",
                  **size)
            bench(f"figure={run.name}_steps_s value={sum(s.duration_s or 0.0 for s in steps):.2f} unit=s",
                  n=len(steps))
            if run.name == "fsc":
                fsc = values.get("fsc", {})
                bench(f"figure=resolution_half_maps_a value={fsc.get('resolution_0143', float('nan')):.2f} unit=A")
                bench(f"figure=resolution_vs_truth_a value={fsc.get('vs_reference_05', float('nan')):.2f} unit=A")
    bench(f"figure=pipeline_wall_s value={wall_s:.2f} unit=s", n=len(runs))
    if failed:
        print(f"runs not finished: {', '.join(failed)} (project kept at {project.path})", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a tenth of the data")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--keep", type=Path, default=None, help="make the project in this folder and keep it")
    args = parser.parse_args()
    if args.keep is not None:
        os.environ.setdefault("ORCH_HOME", str(args.keep / "orch-home"))
        project, wall = run_pipeline(args.keep, args.quick, args.workers)
        return report(project, wall)
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as folder:
        os.environ["ORCH_HOME"] = str(Path(folder) / "orch-home")  # keep the user's project list clean
        project, wall = run_pipeline(Path(folder), args.quick, args.workers)
        return report(project, wall)


if __name__ == "__main__":  # the local cluster's worker processes re-import this module
    sys.exit(main())
