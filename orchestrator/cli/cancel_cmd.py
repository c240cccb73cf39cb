"""``orch cancel PROJECT RUN``: stop a run, its queued steps and the processes of its running ones.

The cancellation is written to the store first (run and unfinished steps CANCELLED), then
the running steps' local process trees are killed; the scheduler, if it runs, sees the
state and drops the run. It works the same with the scheduler down.
"""

from __future__ import annotations

import argparse

from rich.markup import escape

from orchestrator.cli.output import add_json_flag, console, print_json
from orchestrator.project import Project
from orchestrator.scheduler.control import cancel_run
from orchestrator.store import StepState

EPILOG = """examples:
  orch cancel myproj fanout-3          by name
  orch cancel myproj 12 --json         by id; prints what was stopped as JSON

exit codes: 0 cancelled, 2 the run had already ended (finished, failed or cancelled),
  3 no such project or run.
"""

UNFINISHED = (StepState.PENDING, StepState.QUEUED, StepState.RUNNING)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cancel", help="cancel a run and kill its running steps' processes",
        description="Cancel a run: its unfinished steps are marked cancelled and their processes killed.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", help="project folder or name")
    parser.add_argument("run", help="run id or name")
    add_json_flag(parser)
    parser.set_defaults(handler=_cancel)


def _cancel(args: argparse.Namespace) -> int:
    project = Project.load(args.project)
    with project.open_store() as store:
        run = store.runs.get(args.run)
        unfinished = {step.id for step in store.steps.list(run.id, UNFINISHED)}
        killed = cancel_run(store, run.id)
        cancelled = [step.name for step in store.steps.list(run.id, [StepState.CANCELLED]) if step.id in unfinished]
    if args.json:
        print_json({"run": {"id": run.id, "name": run.name}, "state": "cancelled",
                    "steps_cancelled": cancelled, "killed_pids": killed})
        return 0
    console.print(f"cancelled run [bold]{escape(run.name)}[/] (id {run.id}): {len(cancelled)} step(s) stopped")
    if killed:
        console.print(f"killed process(es): {', '.join(str(pid) for pid in killed)}")
    return 0
