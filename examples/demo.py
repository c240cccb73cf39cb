"""The main job (``make demo``): simulated movies in, a refined 3D map and its resolution out.

What it does, in order:

1. creates the project ``--project`` (default ``demo-project``); a project this script made
   before is replaced, anything else at that path is left alone and reported;
2. submits the pipeline of ``examples/pipeline.json`` as one run per protocol, linked by
   pointers (``motioncorr.micrographs`` ...): simulate -> motioncorr -> ctffind -> pick ->
   extract -> (classify2d, refine3d) -> fsc against the ground truth;
3. runs the project's scheduler in this process (a dask LocalCluster, one worker per core)
   until every run has ended, showing the runs' progress, then shuts it down: no scheduler
   or worker process outlives the script;
4. prints a summary: each run's duration, the particle counts, the resolution reached
   (gold-standard half maps) and against the ground truth, checks of drift, defocus and
   picks against the simulation, and where the map is.

``--quick`` runs the same pipeline on a tenth of the data (a smoke test, ~1 min).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from orchestrator.errors import OrchestratorError
from orchestrator.plugins import discover
from orchestrator.project import PROJECT_FILE, Project
from orchestrator.scheduler import daemon
from orchestrator.scheduler.control import submit
from orchestrator.store import OutputRecord, ProjectStore, RunRecord, RunState

PIPELINE = Path(__file__).with_name("pipeline.json")
MARKER = "demo.json"  # written into the projects this script creates, so it only ever replaces its own
QUICK = {"simulate": {"n_micrographs": 4, "particles_per_micrograph": 40},
         "classify2d": {"n_classes": 3, "iterations": 3},
         "refine3d": {"max_iterations": 4}}
STATE_STYLE = {"queued": "dim", "running": "bold cyan", "finished": "green", "failed": "bold red",
               "cancelled": "yellow", "created": "dim"}

console = Console()


class DemoError(Exception):
    """The demo cannot start (the project path is taken, a scheduler is running there)."""


def load_pipeline(quick: bool) -> list[dict[str, Any]]:
    """The runs of ``pipeline.json``, with the ``--quick`` sizes applied."""
    runs = json.loads(PIPELINE.read_text())["runs"]
    if quick:
        for run in runs:
            run["params"] = {**run["params"], **QUICK.get(run["name"], {})}
    return runs


def fresh_project(path: Path) -> Project:
    """Create the demo project, replacing one this script made before (and nothing else)."""
    path = path.expanduser().resolve()
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists() or not (path / PROJECT_FILE).exists():
            raise DemoError(f"{path} exists and was not made by this demo; choose another --project "
                            "or remove it yourself")
        old = Project.load(path)
        pid = daemon.running_pid(old)
        if pid is not None:
            raise DemoError(f"a scheduler (pid {pid}) is still running for {path}; stop it first "
                            f"(kill {pid}) or choose another --project")
        console.print(f"[dim]replacing the previous demo project at {path}[/dim]")
        old.delete()
    project = Project.create(path)
    (path / MARKER).write_text(json.dumps({"pipeline": str(PIPELINE), "created": time.time()}) + "\n")
    return project


def submit_pipeline(project: Project, runs: list[dict[str, Any]]) -> dict[str, int]:
    """Queue every run (the scheduler starts each when its inputs exist); name -> run id."""
    registry = discover()
    ids = {}
    with project.open_store() as store:
        for run in runs:
            record = submit(project, run["protocol"], run["params"], name=run["name"], store=store,
                            registry=registry, start_daemon=False)
            ids[run["name"]] = record.id
    return ids


def _seconds(run: RunRecord) -> float | None:
    if run.started_at is None:
        return None
    end = run.finished_at or (datetime.now(UTC) if run.started_at.tzinfo else datetime.now())
    return (end - run.started_at).total_seconds()


def _result(store: ProjectStore, run: RunRecord) -> str:
    """The one number worth showing for a finished run."""
    if run.run_state is not RunState.FINISHED:
        return (run.error or "").splitlines()[0][:60] if run.error else ""
    values = {o.name: (o.value or {}) for o in store.outputs.list(run.id)}
    if "fsc" in values and run.protocol == "emtools.fsc":
        v = values["fsc"]
        return f"{v.get('resolution_0143', 0):.2f} Å half maps, {v.get('vs_reference_05', 0):.2f} Å vs truth"
    if "volume" in values and values["volume"].get("resolution_a"):
        return f"{values['volume']['resolution_a']:.2f} Å (FSC 0.143)"
    if "classes" in values:
        return f"{values['classes'].get('size')} classes"
    for name in ("particles", "coordinates", "micrographs", "movies"):
        if name in values:
            return f"{values[name].get('size')} {name}"
    return ""


def progress_table(store: ProjectStore, ids: dict[str, int]) -> Table:
    """One row per run: state, steps done, time, result."""
    table = Table(title="em-orchestrator demo: movies to map", title_justify="left")
    for column, justify in (("Run", "left"), ("Protocol", "left"), ("State", "left"), ("Steps", "right"),
                            ("Time", "right"), ("Result", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, run_id in ids.items():
        run = store.runs.get(run_id)
        counts = store.steps.counts(run_id)
        total = sum(counts.values())
        steps = f"{counts.get('finished', 0)}/{total}" if total else "-"
        if counts.get("running"):
            steps += f" ({counts['running']} running)"
        seconds = _seconds(run)
        state = run.state
        table.add_row(name, run.protocol, f"[{STATE_STYLE.get(state, '')}]{state}[/]", steps,
                      f"{seconds:.0f} s" if seconds is not None else "", _result(store, run))
    return table


def run_with_progress(project: Project, ids: dict[str, int], workers: int | None) -> float:
    """Serve the runs in this process while a thread redraws their progress; wall seconds."""
    done = threading.Event()
    started = time.monotonic()

    def show() -> None:
        # Open the display's store only once the scheduler has opened its own: opening a
        # store reads the SQLite file's header with open()/close(), which drops the POSIX
        # locks of any connection this process already holds on it.
        while daemon.running_pid(project) is None and not done.wait(0.1):
            pass
        done.wait(1.0)
        with project.open_store() as store, Live(progress_table(store, ids), console=console,
                                                 refresh_per_second=4) as live:
            while not done.wait(0.5):
                live.update(progress_table(store, ids))
            live.update(progress_table(store, ids))

    display = threading.Thread(target=show, name="progress", daemon=True)
    display.start()
    try:
        # idle exit: the scheduler (and its dask workers) stop once every run has ended
        code = daemon.serve(project, idle_exit_s=1.0, workers=workers)
    finally:
        done.set()
        display.join(timeout=10)
    if code != 0:
        raise DemoError(f"another scheduler holds {project.path}; it will run the queued runs")
    return time.monotonic() - started


def _set_id(output: OutputRecord) -> int:
    if output.set_id is None:
        raise DemoError(f"output {output.name} of run {output.run_id} has no set")
    return output.set_id


def summary(project: Project, ids: dict[str, int], wall_s: float) -> bool:
    """Print the summary table and checks; True when every run finished."""
    from emtools.steps.ground_truth import compare

    with project.open_store() as store:
        runs = {name: store.runs.get(run_id) for name, run_id in ids.items()}
        outputs = {name: {o.name: o for o in store.outputs.list(run.id)} for name, run in runs.items()}
        table = Table(title="Summary", title_justify="left")
        for column in ("Run", "State", "Duration", "Result"):
            table.add_column(column)
        for name, run in runs.items():
            seconds = _seconds(run)
            table.add_row(name, run.state, f"{seconds:.1f} s" if seconds is not None else "-", _result(store, run))
        console.print(table)
        all_finished = all(run.run_state is RunState.FINISHED for run in runs.values())
        console.print(f"wall time {wall_s:.0f} s for {len(runs)} runs")
        if not all_finished:
            failed = [name for name, run in runs.items() if run.run_state is not RunState.FINISHED]
            console.print(f"[bold red]not finished: {', '.join(failed)}[/]; see `orch status {project.path}` and "
                          f"the step logs under {project.runs_dir}/<run>/logs/")
            return False
        simulated = outputs["simulate"]["movies"].value or {}
        particles = outputs["extract"]["particles"].value or {}
        fsc = outputs["fsc"]["fsc"].value or {}
        volume = outputs["refine3d"]["volume"]
        checks = compare(store, project.run_dir("simulate"), project.run_dir("motioncorr"),
                         _set_id(outputs["motioncorr"]["micrographs"]), _set_id(outputs["ctffind"]["micrographs"]),
                         _set_id(outputs["pick"]["coordinates"]))
    pixel = (volume.value or {}).get("pixel_size_a", 0.0)
    console.print(f"particles: {simulated.get('particles')} simulated in {simulated.get('size')} movies, "
                  f"{particles.get('size')} extracted ({particles.get('box_size')} px at {pixel} Å/px, "
                  f"Nyquist {2 * pixel:.1f} Å)")
    console.print(f"final resolution: [bold]{fsc.get('resolution_0143', float('nan')):.2f} Å[/] "
                  f"(gold-standard FSC 0.143 of the half maps); against the ground truth "
                  f"{fsc.get('vs_reference_05', float('nan')):.2f} Å (FSC 0.5)")
    console.print(f"against the simulation: drift RMS error <= {checks.max_drift_rms_px:.2f} px, "
                  f"defocus error <= {checks.max_defocus_error_a:.0f} Å, picks: recall "
                  f"{100 * checks.pick_recall:.0f} %, precision {100 * checks.pick_precision:.0f} %")
    map_path = project.run_dir(runs["refine3d"].name) / (volume.path or "")
    console.print(f"the map: {map_path} (half maps beside it); open it in ChimeraX or UCSF Chimera")
    console.print(f"look at the project: [bold]orch status {project.path}[/]  (runs, steps, outputs)")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--project", type=Path, default=Path("demo-project"), help="project folder to create")
    parser.add_argument("--quick", action="store_true", help="a tenth of the data (smoke test)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    args = parser.parse_args(argv)
    try:
        project = fresh_project(args.project)
        ids = submit_pipeline(project, load_pipeline(args.quick))
        console.print(f"project {project.path}: {len(ids)} runs queued; starting the scheduler")
        wall = run_with_progress(project, ids, args.workers)
    except (DemoError, OrchestratorError) as exc:
        console.print(f"[bold red]demo: {exc}[/]")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: the scheduler stopped; finished steps are kept in the project[/]")
        return 130
    return 0 if summary(project, ids, wall) else 1


if __name__ == "__main__":  # the local cluster's worker processes re-import this module
    sys.exit(main())
