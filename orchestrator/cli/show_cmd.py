"""``orch show PROJECT RUN --provenance``: what a finished run was, from its provenance record.

The record is kept when a run finishes: software and versions, every param, the runs its
inputs came from, each step's host, worker, batch job and accounting, who launched it, and
the SHA-256 of every file it wrote and of the raw files it read.
"""

from __future__ import annotations

import argparse
from typing import Any

from orchestrator.cli.output import add_json_flag, echo, print_json, print_table, style
from orchestrator.errors import UsageError

EPILOG = """examples:
  orch show myproj refine-7 --provenance          versions, params, inputs, steps, file fingerprints
  orch show myproj refine-7 --provenance --json   the whole record as JSON (for scripts and archives)

exit codes: 0 shown, 3 no such project or run, or no record (the run has not finished), 2 bad arguments.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "show", help="show a run's provenance record", epilog=EPILOG,
        description="Show what a finished run was: software, params, inputs, steps and file fingerprints.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", help="project folder or name")
    parser.add_argument("run", help="run id or name")
    parser.add_argument("--provenance", action="store_true", help="the run's provenance record (the default)")
    add_json_flag(parser)
    parser.set_defaults(handler=_show)


def _show(args: argparse.Namespace) -> int:
    from orchestrator.app.provenance import run_provenance

    record = run_provenance(args.project, _run_ref(args.run))
    if args.json:
        print_json(record)
    else:
        print_record(record)
    return 0


def _run_ref(text: str) -> int | str:
    if not text.strip():
        raise UsageError("RUN: give a run id or name")
    return int(text) if text.isdigit() else text


def _line(key: str, value: Any) -> None:
    echo(f"  {style(key + ':', 'bold')} {'-' if value in (None, '') else value}")


def print_record(record: dict[str, Any]) -> None:
    run, software = record["run"], record["software"]
    echo(style(f"run {run['name']} ({run['protocol']}) {run['state']}", "bold"))
    for key in ("host", "launched_by", "created_at", "started_at", "finished_at"):
        _line(key.replace("_", " "), run.get(key))
    echo(style("software", "bold"))
    _line("plugin", f"{software['plugin']['name']} {software['plugin']['version']}")
    _line("python", f"{software['python']} ({software['platform']})")
    _line("libraries", ", ".join(f"{k} {v}" for k, v in software["libraries"].items() if v))
    for name, program in software["programs"].items():
        _line(name, program.get("version") or program.get("note") or "not found")
    print_table("params", ["param", "value"], [[k, v] for k, v in sorted(run["params"].items())])
    if record["inputs"]:
        print_table("inputs", ["param", "from run", "output"],
                    [[i["param"], i["run"], i["output"]] for i in record["inputs"]])
    print_table("steps", ["step", "host", "worker", "job", "attempt", "duration s", "hash"],
                [[s["name"], s["host"], s["worker"], s["job_id"], s["attempt"],
                  None if s["duration_s"] is None else f"{s['duration_s']:.2f}", (s["hash"] or "")[:12]]
                 for s in record["steps"]])
    if record["outputs"]:
        print_table("outputs", ["output", "type", "set", "path"],
                    [[o["name"], o["type"], o.get("set_id"), o["path"]] for o in record["outputs"]])
    files = record["files"]
    for title, entries in (("files written", files["written"]), ("raw files read", files["read_raw"])):
        if entries:
            print_table(f"{title} ({len(entries)})", ["path", "bytes", "sha256"],
                        [[f["path"], f.get("size"), f.get("sha256") or f.get("error")] for f in entries])
    if files["read_from_runs"]:
        echo(f"{len(files['read_from_runs'])} file(s) read from other runs' folders (see those runs' records)")
