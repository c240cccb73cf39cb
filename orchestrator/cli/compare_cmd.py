"""``orch compare PROJECT RUN_A RUN_B``: what differs between two runs, step by step."""

from __future__ import annotations

import argparse
from typing import Any

from orchestrator.cli.output import add_json_flag, echo, print_json, print_table, style

EPILOG = """examples:
  orch compare myproj refine3d refine3d-2               two runs of one project
  orch compare myproj refine3d refine3d --against replayed   a run and its replay in another project
  orch compare myproj ctffind ctffind-2 --json           the same as JSON

It compares params (pointers by run name), software versions, input files and upstream
outputs (SHA-256), steps (content hash), and the files written; where files differ it measures
by how much: particle counts, defocus RMS, resolution at FSC 0.143, map correlation.

exit codes: 0 identical, 1 they differ, 3 no such project or run (or no provenance record).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="what differs between two runs: params, software, inputs, steps, outputs", epilog=EPILOG,
        description="Compare two finished runs through their provenance records and their outputs.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", help="project folder or name (of RUN_A, and of RUN_B unless --against)")
    parser.add_argument("run_a", metavar="RUN_A", help="run id or name")
    parser.add_argument("run_b", metavar="RUN_B", help="run id or name")
    parser.add_argument("--against", metavar="PROJECT", help="the project RUN_B is in (default: the same)")
    add_json_flag(parser)
    parser.set_defaults(handler=_compare)


def _ref(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _compare(args: argparse.Namespace) -> int:
    from orchestrator.app.replay import compare

    result = compare(args.project, _ref(args.run_a), _ref(args.run_b), args.against)
    if args.json:
        print_json(result.to_dict())
    else:
        print_comparison(result.to_dict())
    return 0 if result.identical else 1


def print_comparison(result: dict[str, Any], indent: str = "") -> None:
    """A comparison as sections: what differs, the files, and the metrics of differing outputs."""
    protocol = result["protocol_a"] if result["protocol_a"] == result["protocol_b"] else \
        f"{result['protocol_a']} / {result['protocol_b']}"
    verdict = style("identical", "green") if result["identical"] else style("differ", "yellow")
    echo(f"{indent}{style(result['a'], 'bold')} and {style(result['b'], 'bold')} ({protocol}): {verdict}")
    differences = result["differences"]
    if differences:
        print_table(None, ["what", "", "A", "B"],
                    [[d["section"], d["key"], _short(d["a"]), _short(d["b"])] for d in differences])
    else:
        echo(f"{indent}  params, software, inputs and steps: the same")
    files = result["files"]
    line = f"{indent}  files: {len(files['identical'])} identical"
    for key, label in (("differ", "differ"), ("only_a", "only in A"), ("only_b", "only in B")):
        if files[key]:
            shown = ", ".join(files[key][:4]) + (f" … ({len(files[key])})" if len(files[key]) > 4 else "")
            line += f"; {len(files[key])} {label}: {shown}"
    echo(line)
    if result["metrics"]:
        print_table(None, ["output", "metric", "A", "B", "difference"],
                    [[m["output"], m["name"], _number(m["a"]), _number(m["b"]),
                      _number(m["difference"]) + (f" ({m['note']})" if m["note"] else "")]
                     for m in result["metrics"]])


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _short(value: Any) -> str:
    text = "(absent)" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "…"
