"""``orch transfer status PROJECT``: files moving to and from SSH hosts, read from the store alone.

Shows each staging call in progress (run, host, direction) as a progress bar with the bytes
moved, what is left, the speed and the time left, then the last finished calls. ``--watch``
redraws every second until nothing moves; ``--json`` prints the same data for scripts.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from orchestrator.cli.output import add_json_flag, echo, human_bytes, print_json, print_table

if TYPE_CHECKING:  # the layer is imported by the handler: building the parser loads no store
    from orchestrator.transfer.status import TransferCall

EPILOG = """examples:
  orch transfer status myproj               files being staged in/out, speed, time left; recent calls
  orch transfer status myproj --run ctf-2   only one run's transfers
  orch transfer status myproj --watch       redraw every second until nothing moves (or all stalled)
  orch transfer status myproj --json        the same as JSON
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("transfer", help="files staged to and from SSH hosts",
                                   description="Transfers to hosts without the shared file system.",
                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="transfer_action", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="what is being moved, how much is left, and how fast",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    status.add_argument("project", help="project folder or name")
    status.add_argument("--run", help="only this run (id or name)")
    status.add_argument("--host", help="only this host")
    status.add_argument("--recent", type=int, default=10, metavar="N", help="finished calls shown (default 10)")
    status.add_argument("--watch", action="store_true", help="redraw every second until nothing moves")
    add_json_flag(status)
    status.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from orchestrator.app.access import open_project
    from orchestrator.app.transfers import transfer_status

    with open_project(args.project) as project:
        report = transfer_status(project, args.run, args.host, args.recent)
        if args.json:
            print_json(report)
            return 0
        if report.active:
            from orchestrator.cli import progress

            if args.watch and report.moving:
                report = progress.watch_transfers(
                    report, lambda: transfer_status(project, args.run, args.host, args.recent), transfer_label)
            else:
                progress.show_transfers(report, transfer_label)
        else:
            echo("nothing is being moved now")
    _recent(report.recent)
    return 0


def _recent(calls: list[TransferCall]) -> None:
    if not calls:
        return
    rows = [(call.started_at.strftime("%Y-%m-%d %H:%M:%S") if call.started_at else "", transfer_label(call),
             f"{call.files_done}/{call.files_total}", human_bytes(call.bytes_done),
             f"{human_bytes(call.speed_bps)}/s", call.files_failed or "") for call in calls]
    print_table("recent transfers", ["started", "what", "files", "bytes", "speed", "failed"], rows)


def transfer_label(call: TransferCall) -> str:
    """``run 3 -> gpu-box`` (staged in) or ``run 3 <- gpu-box`` (back)."""
    arrow = "->" if call.direction == "in" else "<-"
    run = f"run {call.run_id}" if call.run_id is not None else "no run"
    return f"{run} {arrow} {call.host}"
