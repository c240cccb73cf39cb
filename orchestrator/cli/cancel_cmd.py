"""``orch cancel PROJECT RUN``: stop a run, its queued steps and the processes of its running ones.

The cancellation is written to the store first (run and unfinished steps CANCELLED), then
the running steps' local process trees are killed; the scheduler, if it runs, sees the
state and drops the run. It works the same with the scheduler down.
"""

from __future__ import annotations

import argparse

from orchestrator.cli.output import add_json_flag, echo, print_json, style

EPILOG = """examples:
  orch cancel myproj fanout-3          by name
  orch cancel myproj 12 --json         by id; prints what was stopped as JSON

exit codes: 0 cancelled, 2 the run had already ended (finished, failed or cancelled),
  3 no such project or run.
"""


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
    from orchestrator.app.runs import cancel_run

    outcome = cancel_run(args.project, args.run)
    if args.json:
        print_json(outcome)
        return 0
    echo(f"cancelled run {style(outcome.run_name, 'bold')} (id {outcome.run_id}): "
         f"{len(outcome.steps_cancelled)} step(s) stopped")
    if outcome.killed_pids:
        echo(f"killed process(es): {', '.join(str(pid) for pid in outcome.killed_pids)}")
    return 0
