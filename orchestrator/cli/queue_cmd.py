"""``orch queue [HOST]``: a project's batch jobs as their queues see them, one query per host."""

from __future__ import annotations

import argparse

from orchestrator.cli.output import add_json_flag, console, err_console, print_json, print_table
from orchestrator.hosts.config.loader import load_hosts
from orchestrator.hosts.config.units import format_hms
from orchestrator.hosts.queues.view import queue_rows
from orchestrator.project import Project

EPILOG = """examples:
  orch queue --project apoferritin              every queued or running batch job of the project
  orch queue cluster --project apoferritin --json
  orch queue --project apoferritin --all        also the jobs of steps that ended
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("queue", help="show a project's batch jobs as the queues see them",
                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("host", nargs="?", help="only this host")
    parser.add_argument("--project", default=".", metavar="PROJECT",
                        help="project folder or name (default: the current folder)")
    parser.add_argument("--all", action="store_true", help="include the jobs of steps that ended")
    add_json_flag(parser)
    parser.set_defaults(handler=_queue)


def _queue(args: argparse.Namespace) -> int:
    project = Project.load(args.project)
    hosts = load_hosts(project.path)
    with project.open_store() as store:
        rows, errors = queue_rows(store, hosts, args.host, include_finished=args.all)
    if args.json:
        print_json({"project": project.name, "jobs": [r.to_dict() for r in rows], "errors": errors})
        return 1 if errors else 0
    if not rows:
        console.print(f"no batch jobs in project {project.name}" + (f" on host {args.host}" if args.host else ""))
    else:
        print_table(f"batch jobs of project {project.name}",
                    ["host", "job id", "run", "step", "state", "partition", "elapsed", "node", "GPUs", "reason"],
                    [(r.host, r.job_id, r.run, r.step, r.state, r.partition,
                      format_hms(int(r.elapsed_s)) if r.elapsed_s is not None else None, r.node, r.gpus, r.reason)
                     for r in rows])
    for host, error in errors.items():
        err_console.print(f"host {host}: the queue did not answer: {error}")
    return 1 if errors else 0
