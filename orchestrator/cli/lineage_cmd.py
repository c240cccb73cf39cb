"""``orch lineage PROJECT RUN[:OUTPUT]``: the runs an output came from, back to the raw data."""

from __future__ import annotations

import argparse

from orchestrator.cli.output import add_json_flag, echo, print_json, style
from orchestrator.errors import UsageError

EPILOG = """examples:
  orch lineage myproj refine-7:map       the runs behind refine-7's output 'map', down to the raw movies
  orch lineage myproj refine-7 --json    the same for every output of the run, as JSON

exit codes: 0 shown, 3 no such project, run or output, 2 bad arguments.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lineage", help="walk from a run's output back to the raw data", epilog=EPILOG,
        description="List the runs an output came from, nearest first, and the raw files at the start.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", help="project folder or name")
    parser.add_argument("output", metavar="RUN[:OUTPUT]", help="a run id or name, optionally with one output")
    add_json_flag(parser)
    parser.set_defaults(handler=_lineage)


def _lineage(args: argparse.Namespace) -> int:
    from orchestrator.app.provenance import output_lineage

    run_text, _, output = args.output.partition(":")
    if not run_text.strip():
        raise UsageError("RUN[:OUTPUT]: give a run id or name, e.g. refine-7:map")
    nodes = output_lineage(args.project, int(run_text) if run_text.isdigit() else run_text, output or None)
    if args.json:
        print_json([node.to_dict() for node in nodes])
        return 0
    # nearest first: the number is how many runs away from the one asked about
    for node in nodes:
        used = f" -> {', '.join(node.outputs_used)}" if node.outputs_used else ""
        echo(f"{node.depth:>2}  {style(node.run, 'bold')} ({node.protocol}, {node.state}){used}")
        for link in node.inputs:
            echo(f"      reads {link['param']} = {link['run']}:{link['output']}")
        if node.inputs:
            continue
        if not node.recorded:
            echo("      no run inputs; no provenance record to say what it read")
        elif not node.raw_files:
            echo("      no run inputs and no raw files read: the data was made by this run")
        else:
            echo(f"      data entered here: {len(node.raw_files)} raw file(s)")
            for raw in node.raw_files[:5]:
                echo(f"        {raw['path']}  sha256 {str(raw.get('sha256'))[:16]}…")
            if len(node.raw_files) > 5:
                echo(f"        … and {len(node.raw_files) - 5} more (--json lists all)")
    return 0
