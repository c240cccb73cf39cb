"""``orch hosts list|show NAME|check NAME``: the execution hosts configured once."""

from __future__ import annotations

import argparse
from typing import Any

from orchestrator.cli.output import add_json_flag, echo, print_json, print_table
from orchestrator.hosts.config.units import format_hms, format_memory_mb

EPILOG = """where hosts come from (later wins, by host name):
  ~/.config/orchestrator/hosts.toml, the project's hosts.toml (--project), then ORCH_HOSTS
  (a path), plus the built-in host `local`. Examples: hosts/*.toml in the repository.

examples:
  orch hosts list
  orch hosts show cluster --json
  ORCH_HOSTS=site-hosts.toml orch hosts check cluster
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("hosts", help="list, show and check execution hosts", epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="hosts_command", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="list the configured hosts")
    _common(listing)
    listing.set_defaults(handler=_list)

    show = sub.add_parser("show", help="show one host's configuration")
    show.add_argument("name")
    _common(show)
    show.set_defaults(handler=_show)

    check = sub.add_parser("check", help="check a host for real: reachable, queue, work dir, GPUs")
    check.add_argument("name")
    _common(check)
    check.set_defaults(handler=_check)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", metavar="PROJECT", help="also read this project's hosts.toml")
    add_json_flag(parser)


def _list(args: argparse.Namespace) -> int:
    from orchestrator.app.hosts import list_hosts

    listed = list_hosts(args.project)
    if args.json:
        print_json(listed.hosts)
        return 0
    print_table("hosts", ["name", "kind", "reached", "queues", "GPUs", "defined in"],
                [(h.name, h.kind, h.reach, ", ".join(h.queues) or "-", h.gpus, h.source or "built in")
                 for h in listed.hosts])
    if not listed.files:
        echo("no hosts file found: see `orch hosts --help` and the examples in hosts/")
    return 0


def _show(args: argparse.Namespace) -> int:
    from orchestrator.app.hosts import gpus, reach, show_host

    host = show_host(args.name, args.project)
    if args.json:
        print_json(host.to_dict())
        return 0
    rows: list[tuple[str, Any]] = [
        ("kind", host.kind), ("defined in", str(host.source) if host.source else "built in"),
        ("description", host.description), ("reached", reach(host)), ("work dir", host.work_dir or "-"),
            ("shared file system", "yes" if host.shared_fs else "no")]
    rows += [("path map", f"{local} -> {remote}") for local, remote in host.path_map]
    rows += [("env setup", line) for line in host.env_setup]
    if not host.is_queue:
        rows += [("cores", host.cores or "-"), ("memory", format_memory_mb(host.memory_mb) if host.memory_mb else "-"),
                 ("GPUs", gpus(host)), ("GPU sharing", "allowed" if host.gpu_sharing else "no")]
    else:
        rows += [("default queue", host.default_queue), ("max jobs", host.max_jobs or "no limit"),
                 ("GPU sharing", "allowed" if host.gpu_sharing else "no"), ("template", host.template or "default")]
        rows += [("extra directive", d) for d in host.extra_directives]
    print_table(f"host {host.name}", ["key", "value"], rows)
    if host.queues:
        print_table("queues", ["queue", "cores", "memory", "GPUs", "walltime", "max nodes", "GPU request"],
                    [(q.name, q.cores or "-", format_memory_mb(q.memory_mb) if q.memory_mb else "-",
                      f"{q.gpus} {q.gpu_type or ''}".strip(), format_hms(q.walltime_s) if q.walltime_s else "-",
                      q.max_nodes, q.gpu_request or "(default)") for q in host.queues.values()])
        p = host.pilot
        if not p.enabled:
            print_table("pilot workers", ["pilots"], [("off: every step runs as its own batch job",)])
            return 0
        print_table("pilot workers", ["queue", "cores", "memory", "walltime", "processes", "GPUs", "pilots"],
                    [(p.queue, p.cores, format_memory_mb(p.memory_mb), format_hms(p.walltime_s), p.processes,
                      p.gpus, f"{p.min_pilots}..{p.max_pilots or host.max_jobs or 1}")])
    return 0


def _check(args: argparse.Namespace) -> int:
    from orchestrator.app.hosts import check_host

    report = check_host(args.name, args.project)
    if args.json:
        print_json({"host": report.host, "ok": report.ok, "checks": report.checks})
    else:
        print_table(f"check of host {report.host} ({report.kind})", ["check", "result", "detail", "s"],
                    [(r.name, "ok" if r.ok else "FAILED", r.detail, f"{r.seconds:.2f}") for r in report.checks])
    return 0 if report.ok else 1

