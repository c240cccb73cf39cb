"""``orch transfer status PROJECT``: files moving to and from SSH hosts, read from the store alone.

Shows each staging call in progress (run, host, direction) as a progress bar with the bytes
moved, what is left, the speed and the time left, then the last finished calls. ``--watch``
redraws every second until nothing moves; ``--json`` prints the same data for scripts.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from orchestrator.cli.output import add_json_flag, console, print_json, print_table
from orchestrator.project import Project
from orchestrator.store import ProjectStore
from orchestrator.transfer.status import transfer_status

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


def _read(store: ProjectStore, args: argparse.Namespace) -> dict[str, Any]:
    run_id = store.runs.get(args.run).id if args.run else None
    return transfer_status(store.engine, store.project_id, run_id=run_id, host=args.host, recent=args.recent)


def _status(args: argparse.Namespace) -> int:
    project = Project.load(args.project)
    with project.open_store() as store:
        data = _read(store, args)
        if args.json:
            print_json({"project": project.name, **data})
            return 0
        if args.watch and data["active"]:
            with Live(_bars(data["active"]), console=console, refresh_per_second=2) as live:
                while data["active"] and not all(call["stalled"] for call in data["active"]):
                    time.sleep(1.0)
                    data = _read(store, args)
                    live.update(_bars(data["active"]))
        elif data["active"]:
            console.print(_bars(data["active"]))
        else:
            console.print("nothing is being moved now")
        _recent(data["recent"])
    return 0


def _label(call: dict[str, Any]) -> str:
    arrow = "->" if call["direction"] == "in" else "<-"
    run = f"run {call['run_id']}" if call["run_id"] is not None else "no run"
    return escape(f"{run} {arrow} {call['host']}")


def _bars(active: list[dict[str, Any]]) -> Progress:
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        TextColumn("{task.fields[speed]}"), TextColumn("{task.fields[files]}"),
                        TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[now]}"),
                        console=console, auto_refresh=False)
    for call in active:
        eta = "stalled" if call["stalled"] else (f"{call['eta_s']:.0f} s left" if call["eta_s"] is not None else "")
        moving = call["moving"][0].rsplit("/", 1)[-1] if call["moving"] else ""
        progress.add_task(_label(call), total=max(call["bytes_total"], 1), completed=call["bytes_done"],
                          speed=f"{human_bytes(call['speed_bps'])}/s",
                          files=f"{call['files_done']}/{call['files_total']} files", eta=eta, now=escape(moving))
    return progress


def _recent(calls: list[dict[str, Any]]) -> None:
    if not calls:
        return
    rows = [(call["started_at"].strftime("%Y-%m-%d %H:%M:%S") if call["started_at"] else "", _label(call),
             f"{call['files_done']}/{call['files_total']}", human_bytes(call["bytes_done"]),
             f"{human_bytes(call['speed_bps'])}/s", call["files_failed"] or "") for call in calls]
    print_table("recent transfers", ["started", "what", "files", "bytes", "speed", "failed"], rows)


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"
