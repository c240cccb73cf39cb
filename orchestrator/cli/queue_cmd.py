"""``orch queue [HOST]``: a project's batch jobs as their queues see them, one query per host,
and the hosts the scheduler found unreachable (since when, why)."""

from __future__ import annotations

import argparse

from orchestrator.cli.host_health import print_unreachable_hosts
from orchestrator.cli.output import add_json_flag, echo, print_json, print_table
from orchestrator.hosts.config.units import format_hms

EPILOG = """examples:
  orch queue --project apoferritin              every queued or running batch job of the project
  orch queue cluster --project apoferritin --json
  orch queue --project apoferritin --all        also the jobs of steps that ended

--json also gives "hosts": each host's health as the scheduler last reported it ("ok" or
"unreachable", since, message); "errors": the hosts whose queue did not answer this command.
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
    from orchestrator.app.queue import queue_jobs

    report = queue_jobs(args.project, args.host, include_finished=args.all)
    rows, errors = report.jobs, report.errors
    if args.json:
        print_json(report)
        return 1 if errors else 0
    if not rows:
        echo(f"no batch jobs in project {report.project}" + (f" on host {args.host}" if args.host else ""))
    else:
        print_table(f"batch jobs of project {report.project}",
                    ["host", "job id", "run", "step", "state", "partition", "elapsed", "node", "GPUs", "reason"],
                    [(r.host, r.job_id, r.run, r.step, r.state, r.partition,
                      format_hms(int(r.elapsed_s)) if r.elapsed_s is not None else None, r.node, r.gpus, r.reason)
                     for r in rows])
    for host, error in errors.items():
        echo(f"host {host}: the queue did not answer: {error}", err=True)
    print_unreachable_hosts(report.hosts, err=True)
    return 1 if errors else 0
