"""``orch hosts list|show NAME|check NAME``: the execution hosts configured once."""

from __future__ import annotations

import argparse
from typing import Any

from orchestrator.cli.output import add_json_flag, console, print_json, print_table
from orchestrator.hosts.check import check_host
from orchestrator.hosts.config.loader import load_hosts
from orchestrator.hosts.config.model import HostConfig, HostRegistry
from orchestrator.hosts.config.units import format_hms, format_memory_mb

EPILOG = """where hosts come from (later wins, by host name):
  ~/.config/orchestrator/hosts.toml, the project's hosts.toml (--project), then ORCH_HOSTS
  (a path), plus the built-in host `local`. Examples: hosts/*.toml in the repository.

examples:
  orch hosts list
  orch hosts show cluster --json
  ORCH_HOSTS=hosts/ci-test.toml orch hosts check ci-slurm
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


def registry(args: argparse.Namespace) -> HostRegistry:
    project_dir = None
    if getattr(args, "project", None):
        from orchestrator.project import Project

        project_dir = Project.load(args.project).path
    return load_hosts(project_dir)


def _reach(host: HostConfig) -> str:
    return f"ssh {host.ssh.destination}:{host.ssh.port}" if host.ssh else "this machine"


def _gpus(host: HostConfig) -> str:
    if host.queues:
        parts = [f"{q.name}: {q.gpus}" + (f" {q.gpu_type}" if q.gpu_type else "")
                 for q in host.queues.values() if q.gpus]
        return ", ".join(parts) or "0"
    return f"{host.gpus}" + (f" {host.gpu_type}" if host.gpu_type else "")


def _list(args: argparse.Namespace) -> int:
    hosts = registry(args)
    if args.json:
        print_json([{"name": h.name, "kind": h.kind.value, "reach": _reach(h), "queues": list(h.queues),
                     "gpus": _gpus(h), "source": str(h.source) if h.source else None} for h in hosts])
        return 0
    print_table("hosts", ["name", "kind", "reached", "queues", "GPUs", "defined in"],
                [(h.name, h.kind.value, _reach(h), ", ".join(h.queues) or "-", _gpus(h),
                  str(h.source) if h.source else "built in") for h in hosts])
    if not hosts.files:
        console.print("no hosts file found: see `orch hosts --help` and the examples in hosts/")
    return 0


def _show(args: argparse.Namespace) -> int:
    host = registry(args).get(args.name)
    if args.json:
        print_json(host.to_dict())
        return 0
    rows: list[tuple[str, Any]] = [
        ("kind", host.kind.value), ("defined in", str(host.source) if host.source else "built in"),
        ("description", host.description), ("reached", _reach(host)), ("work dir", host.work_dir or "-"),
            ("shared file system", "yes" if host.shared_fs else "no")]
    rows += [("path map", f"{local} -> {remote}") for local, remote in host.path_map]
    rows += [("env setup", line) for line in host.env_setup]
    if not host.is_queue:
        rows += [("cores", host.cores or "-"), ("memory", format_memory_mb(host.memory_mb) if host.memory_mb else "-"),
                 ("GPUs", _gpus(host)), ("GPU sharing", "allowed" if host.gpu_sharing else "no")]
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
    host = registry(args).get(args.name)
    results = check_host(host)
    ok = all(r.ok for r in results)
    if args.json:
        print_json({"host": host.name, "ok": ok, "checks": [r.to_dict() for r in results]})
    else:
        print_table(f"check of host {host.name} ({host.kind.value})", ["check", "result", "detail", "s"],
                    [(r.name, "ok" if r.ok else "FAILED", r.detail, f"{r.seconds:.2f}") for r in results])
    return 0 if ok else 1

