"""``orch status PROJECT [RUN]``: where a project stands, read from the store alone.

Works whether the scheduler is up or not (it says which): a table of runs with their step
counts, durations and host, or, for one run, its steps with where and how they ran.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape

from orchestrator.cli.output import add_json_flag, console, print_json, print_table
from orchestrator.errors import UsageError
from orchestrator.project import Project
from orchestrator.scheduler.daemon import running_pid
from orchestrator.store import ProjectStore, RunRecord, StepRecord, StepState

EPILOG = """examples:
  orch status myproj                       every run: state, steps finished/total, duration, host
  orch status myproj fanout-3              one run's steps: state, attempt, worker, pid, memory, error
  orch status myproj fanout-3 --state failed --state running
  orch status myproj --json                the same as JSON, for scripts

exit codes: 0 shown (whatever the runs' states), 3 no such project or run.
"""

DEFAULT_STEP_LIMIT = 200


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="runs and steps of a project, from the store (the scheduler may be down)",
        description="Show a project's runs, or one run's steps, from the project store.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", help="project folder or name")
    parser.add_argument("run", nargs="?", help="a run id or name: show its steps")
    parser.add_argument("--state", action="append", default=[], metavar="STATE",
                        help="with RUN: only steps in this state (repeatable): "
                             + ", ".join(s.value for s in StepState))
    parser.add_argument("--limit", type=int, default=DEFAULT_STEP_LIMIT, metavar="N",
                        help=f"with RUN: steps shown in the table (default {DEFAULT_STEP_LIMIT}; 0: all; "
                             "--json lists all)")
    add_json_flag(parser)
    parser.set_defaults(handler=_status)


# ---------------------------------------------------------------------- time helpers
def as_utc(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes (stored as UTC), PostgreSQL aware ones: make both aware."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def elapsed_s(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from start to end (to now while it has not ended); None if it never started."""
    begin = as_utc(start)
    if begin is None:
        return None
    return max(0.0, ((as_utc(end) or datetime.now(UTC)) - begin).total_seconds())


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def in_start_order(steps: Sequence[StepRecord]) -> list[StepRecord]:
    """Steps in the order they started (the order their logs were written), then unstarted ones by id."""
    never = datetime.max.replace(tzinfo=UTC)
    return sorted(steps, key=lambda s: (as_utc(s.started_at) or never, s.id))


def plain_rows(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Cells as literal text: a name or an error with ``[...]`` is not rich markup."""
    return [[escape(v) if isinstance(v, str) else v for v in row] for row in rows]


def first_line(text: str | None) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


# ---------------------------------------------------------------------- data
def scheduler_json(project: Project) -> dict[str, Any]:
    pid = running_pid(project)
    return {"running": pid is not None, "pid": pid}


def step_summary(counts: dict[str, int]) -> dict[str, int]:
    """``{"total": n, "finished": n, ...}`` with every step state present (zeros included)."""
    summary = {"total": sum(counts.values())}
    summary.update({state.value: counts.get(state.value, 0) for state in StepState})
    return summary


def run_json(run: RunRecord, counts: dict[str, int]) -> dict[str, Any]:
    return {"id": run.id, "name": run.name, "protocol": run.protocol, "state": run.state, "host": run.host,
            "created_at": as_utc(run.created_at), "started_at": as_utc(run.started_at),
            "finished_at": as_utc(run.finished_at), "duration_s": elapsed_s(run.started_at, run.finished_at),
            "step_counts": step_summary(counts),
            "error": run.error}


def step_json(step: StepRecord) -> dict[str, Any]:
    return {"id": step.id, "name": step.name, "state": step.state, "attempt": step.attempt,
            "max_retries": step.max_retries, "host": step.host, "worker": step.worker, "pid": step.pid,
            "job_id": step.job_id, "gpus": step.gpus, "deps": step.deps, "resources": step.resources,
            "queued_at": as_utc(step.queued_at), "started_at": as_utc(step.started_at),
            "finished_at": as_utc(step.finished_at),
            "duration_s": step.duration_s if step.duration_s is not None else (
                elapsed_s(step.started_at, None) if step.state == StepState.RUNNING.value else None),
            "peak_memory_mb": step.peak_memory_mb, "error": step.error}


# ---------------------------------------------------------------------- command
def _status(args: argparse.Namespace) -> int:
    states = _parse_states(args.state)
    if states and args.run is None:
        raise UsageError("--state filters the steps of one run: name the run too")
    project = Project.load(args.project)
    scheduler = scheduler_json(project)
    with project.open_store() as store:
        if args.run is None:
            runs = [run_json(run, store.steps.counts(run.id)) for run in store.runs.list()]
            data: dict[str, Any] = {"project": project.name, "scheduler": scheduler, "runs": runs}
        else:
            data = {"project": project.name, "scheduler": scheduler, "run": _one_run(store, args.run, states)}
    if args.json:
        print_json(data)
    elif args.run is None:
        _print_runs(project, data["runs"])
    else:
        _print_run(data["run"], args.limit)
    if not args.json:
        _print_scheduler(scheduler)
    return 0


def _parse_states(values: Sequence[str]) -> list[StepState]:
    try:
        return [StepState(value.lower()) for value in values]
    except ValueError:
        bad = next(v for v in values if v.lower() not in {s.value for s in StepState})
        raise UsageError(f"--state {bad}: not a step state; use one of "
                         + ", ".join(s.value for s in StepState)) from None


def _one_run(store: ProjectStore, ref: str, states: Sequence[StepState]) -> dict[str, Any]:
    run = store.runs.get(ref)
    data = run_json(run, store.steps.counts(run.id))
    data["params"] = run.params
    data["outputs"] = [{"name": o.name, "type": o.type_name, "path": o.path} for o in store.outputs.list(run.id)]
    data["steps"] = [step_json(step) for step in in_start_order(store.steps.list(run.id, states or None))]
    return data


def _counts_text(steps: dict[str, int]) -> str:
    done = f"{steps['finished']}/{steps['total']}"
    others = [f"{steps[s.value]} {s.value}" for s in StepState if s is not StepState.FINISHED and steps[s.value]]
    return done + (f" ({', '.join(others)})" if others else "")


def _print_runs(project: Project, runs: Sequence[dict[str, Any]]) -> None:
    if not runs:
        console.print(f"project {escape(project.name)} has no runs yet: queue one with "
                      "`orch run PROJECT PROTOCOL [KEY=VALUE ...]`")
        return
    rows = [(r["id"], r["name"], r["protocol"], r["state"], _counts_text(r["step_counts"]),
             format_duration(r["duration_s"]), r["host"]) for r in runs]
    headers = ["id", "name", "protocol", "state", "steps", "duration", "host"]
    print_table(f"runs of {project.name}", headers, plain_rows(rows))
    for run in runs:
        if run["state"] == "failed" and run["error"]:
            console.print(f"[red]{escape(run['name'])}[/]: {escape(first_line(run['error']))}", soft_wrap=True)


def _print_run(run: dict[str, Any], limit: int) -> None:
    console.print(f"run [bold]{escape(run['name'])}[/] (id {run['id']}, {escape(run['protocol'])}) "
                  f"[bold]{run['state']}[/] on {escape(run['host'])}; steps {_counts_text(run['step_counts'])}; "
                  f"duration {format_duration(run['duration_s']) or '-'}")
    if run["error"] and run["state"] == "failed":
        console.print(f"[red]error:[/] {escape(first_line(run['error']))}", soft_wrap=True)
    steps = run["steps"]
    shown = steps if limit <= 0 else steps[:limit]
    rows = [(s["name"], s["state"], s["attempt"], (s["worker"] or s["host"] or "").removeprefix("tcp://"), s["pid"],
             format_duration(s["duration_s"]),
             "" if s["peak_memory_mb"] is None else f"{s['peak_memory_mb']:.0f} MB", first_line(s["error"]))
            for s in shown]
    print_table("steps", ["step", "state", "attempt", "worker/host", "pid", "duration", "peak memory", "error"],
                plain_rows(rows))
    if len(shown) < len(steps):
        console.print(f"... {len(steps) - len(shown)} more step(s): use --limit 0, --state or --json")
    if run["outputs"]:
        console.print("outputs: " + ", ".join(f"{escape(o['name'])} ({o['type']})" for o in run["outputs"]))


def _print_scheduler(scheduler: dict[str, Any]) -> None:
    if scheduler["running"]:
        console.print(f"scheduler: running (pid {scheduler['pid']})")
    else:
        console.print("scheduler: not running (`orch daemon PROJECT` or the next `orch run` starts it)")
