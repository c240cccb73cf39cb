"""``orch replay PROJECT --into NEW``: run a project's runs again in a new project and compare."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.cli.output import add_json_flag, echo, print_json, style

EPILOG = """examples:
  orch replay myproj --into myproj-replay              every finished run, from the same raw data
  orch replay myproj --into r2 --runs refine3d         refine3d and the runs it depends on
  orch replay myproj --into r3 --host slurm            on another configured host
  orch replay myproj --into r4 --json                  the report as JSON (also kept as r4/replay.json)

The new project gets the same runs with the same params; each run is then compared with its
original (see `orch compare`). Seeded algorithms on the same host give bit-identical files.

exit codes: 0 every run identical, 1 some differ or failed, 2 bad arguments, 3 no such project or run,
124 --timeout reached.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay", help="re-run a project (or some runs) into a new project and compare with the original",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay runs from their original inputs in a new project, then compare run for run.")
    parser.add_argument("project", help="project folder or name to replay")
    parser.add_argument("--into", required=True, type=Path, metavar="NEW", help="the new project's folder")
    parser.add_argument("--runs", nargs="+", metavar="RUN", help="replay these runs (and what they depend on)")
    parser.add_argument("--host", metavar="HOST", help="run every run on this host (default: where each ran)")
    parser.add_argument("--timeout", type=float, metavar="S", help="wait at most S seconds for the runs")
    add_json_flag(parser)
    parser.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace) -> int:
    from orchestrator.app.replay import replay_project
    from orchestrator.cli.compare_cmd import print_comparison
    from orchestrator.cli.progress import RunBars

    runs = [int(ref) if ref.isdigit() else ref for ref in args.runs or []]

    def created(infos: list) -> None:
        if not args.json:
            echo(f"replaying {len(infos)} run(s) into {args.into}: {', '.join(run.name for run in infos)}")

    with RunBars(not args.json) as progress:
        report = replay_project(args.project, args.into, runs or None, host=args.host, timeout_s=args.timeout,
                                on_progress=progress.update, on_created=created)
    if args.json:
        print_json(report.to_dict())
    else:
        for skipped in report.skipped:
            echo(style(f"not replayed: {skipped} (only finished runs are)", "yellow"))
        for run in report.runs:
            if run.comparison is None:
                echo(f"{style(run.name, 'bold')}: {run.original_state} there, {run.replay_state} here: not compared")
            else:
                print_comparison(run.comparison)
        same = sum(1 for run in report.runs if run.identical)
        echo(f"{same} of {len(report.runs)} run(s) identical; report: {Path(report.into) / 'replay.json'}")
    unfinished = [run for run in report.runs if run.replay_state in ("queued", "running")]
    if unfinished:
        return 124
    return 0 if report.identical else 1
