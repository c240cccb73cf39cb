"""``orch status PROJECT [RUN]``: where a project stands, read from the store alone.

Works whether the scheduler is up or not (it says which): a table of runs with their step
counts, durations and host, or, for one run, its steps with where and how they ran; then the
hosts the scheduler found unreachable, since when and why.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.cli.host_health import print_unreachable_hosts
from orchestrator.cli.output import add_json_flag, echo, first_line, format_duration, print_json, print_table, style
from orchestrator.errors import UsageError

if TYPE_CHECKING:  # the layer is imported by the handler: building the parser loads no store
    from orchestrator.app.records import StepCounts
    from orchestrator.app.scheduler import SchedulerState
    from orchestrator.app.status import RunDetail, RunSummary

EPILOG = """examples:
  orch status myproj                       every run: state, steps finished/total, duration, host
  orch status myproj fanout-3              one run's steps: state, attempt, worker, pid, memory, error
  orch status myproj fanout-3 --state failed --state running
  orch status myproj --json                the same as JSON, for scripts (with "hosts": each host's
                                           health, "ok" or "unreachable", since when and why)

exit codes: 0 shown (whatever the runs' states), 3 no such project or run.
"""

DEFAULT_STEP_LIMIT = 200
STEP_STATES = ("pending", "queued", "running", "finished", "failed", "cancelled")  # StepState, without the store


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="runs and steps of a project, from the store (the scheduler may be down)",
        description="Show a project's runs, or one run's steps, from the project store.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", help="project folder or name")
    parser.add_argument("run", nargs="?", help="a run id or name: show its steps")
    parser.add_argument("--state", action="append", default=[], metavar="STATE",
                        help="with RUN: only steps in this state (repeatable): " + ", ".join(STEP_STATES))
    parser.add_argument("--limit", type=int, default=DEFAULT_STEP_LIMIT, metavar="N",
                        help=f"with RUN: steps shown in the table (default {DEFAULT_STEP_LIMIT}; 0: all; "
                             "--json lists all)")
    add_json_flag(parser)
    parser.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    states = _parse_states(args.state)
    if states and args.run is None:
        raise UsageError("--state filters the steps of one run: name the run too")
    from orchestrator.app import status

    if args.run is None:
        report = status.project_status(args.project)
        if args.json:
            print_json(report)
        else:
            _print_runs(report.project, report.runs)
            print_unreachable_hosts(report.hosts)
        scheduler = report.scheduler
    else:
        one = status.run_status(args.project, args.run, states)
        if args.json:
            print_json(one)
        else:
            _print_run(one.run, args.limit)
            print_unreachable_hosts(one.hosts)
        scheduler = one.scheduler
    if not args.json:
        _print_scheduler(scheduler)
    return 0


def _parse_states(values: Sequence[str]) -> list[str]:
    for value in values:
        if value.lower() not in STEP_STATES:
            raise UsageError(f"--state {value}: not a step state; use one of " + ", ".join(STEP_STATES))
    return [value.lower() for value in values]


def counts_text(counts: StepCounts) -> str:
    """``3/8 (2 running, 3 pending)``: finished of all, then the other states present."""
    done = f"{counts.finished}/{counts.total}"
    others = [f"{counts[state]} {state}" for state in STEP_STATES if state != "finished" and counts[state]]
    return done + (f" ({', '.join(others)})" if others else "")


def _print_runs(project: str, runs: Sequence[RunSummary]) -> None:
    if not runs:
        echo(f"project {project} has no runs yet: queue one with `orch run PROJECT PROTOCOL [KEY=VALUE ...]`")
        return
    rows = [(r.id, r.name, r.protocol, r.state, counts_text(r.step_counts), format_duration(r.duration_s), r.host)
            for r in runs]
    print_table(f"runs of {project}", ["id", "name", "protocol", "state", "steps", "duration", "host"], rows)
    for run in runs:
        if run.state == "failed" and run.error:
            echo(f"{style(run.name, 'red')}: {first_line(run.error)}")


def _print_run(run: RunDetail, limit: int) -> None:
    echo(f"run {style(run.name, 'bold')} (id {run.id}, {run.protocol}) {style(run.state, 'bold')} on {run.host}; "
         f"steps {counts_text(run.step_counts)}; duration {format_duration(run.duration_s) or '-'}")
    if run.error and run.state == "failed":
        echo(f"{style('error:', 'red')} {first_line(run.error)}")
    shown = run.steps if limit <= 0 else run.steps[:limit]
    rows = [(s.name, s.state, s.attempt, (s.worker or s.host or "").removeprefix("tcp://"), s.pid,
             format_duration(s.duration_s), "" if s.peak_memory_mb is None else f"{s.peak_memory_mb:.0f} MB",
             first_line(s.error)) for s in shown]
    print_table("steps", ["step", "state", "attempt", "worker/host", "pid", "duration", "peak memory", "error"], rows)
    if len(shown) < len(run.steps):
        echo(f"... {len(run.steps) - len(shown)} more step(s): use --limit 0, --state or --json")
    if run.outputs:
        echo("outputs: " + ", ".join(f"{o.name} ({o.type_name})" for o in run.outputs))


def _print_scheduler(scheduler: SchedulerState) -> None:
    if scheduler.running:
        echo(f"scheduler: running (pid {scheduler.pid})")
    else:
        echo("scheduler: not running (`orch daemon PROJECT` or the next `orch run` starts it)")
