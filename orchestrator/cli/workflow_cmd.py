"""``orch workflow``: a project's runs written as a workflow file, and a workflow file (ours or
Scipion's) read, shown and imported into a project as runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from orchestrator.cli.output import add_json_flag, echo, print_json, style
from orchestrator.errors import UsageError

EPILOG = """examples:
  orch workflow export myproj > wf.json                    every run, its params and links
  orch workflow export myproj motioncorr ctffind -o wf.json  two runs (a pointer to any other run is left open)
  orch workflow export myproj --open import.pixel_size --open import.dose > wf.json
  orch workflow show wf.json                               the runs it would create and the inputs it asks for
  orch workflow import wf.json newproj --set import.files='raw/*.tiff' --set import.pixel_size=0.83
  orch workflow import scipion_workflow.json newproj       a Scipion workflow: converted, with a report

An exported file holds no absolute paths, user names or secrets: paths become open inputs that
`import` asks for (or takes from --set NAME=VALUE). The format is described in the README
("Workflows as files") and by orchestrator/workflow/schemas/workflow-v2.schema.json.

exit codes: 0 done, 2 bad file or arguments, 3 no such project, run or file.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "workflow", help="export a project's runs as a workflow file, or import one (ours or Scipion's)",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Workflows as files: runs, params and links, portable between projects and machines.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    export = actions.add_parser("export", help="write a project's runs as a workflow file", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("project", help="project folder or name")
    export.add_argument("runs", nargs="*", metavar="RUN", help="runs to export (id or name; default: all)")
    export.add_argument("--open", action="append", default=[], metavar="RUN.PARAM",
                        help="leave this param open (asked for on import, its value here the default)")
    export.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE (default: standard output)")
    export.set_defaults(handler=_export)

    show = actions.add_parser("show", help="what a workflow file would create, and the inputs it asks for",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("file", type=Path, help="workflow file (ours, or a Scipion workflow or template)")
    add_json_flag(show)
    show.set_defaults(handler=_show)

    imp = actions.add_parser("import", help="create and queue the runs of a workflow file", epilog=EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("file", type=Path, help="workflow file (ours, or a Scipion workflow or template)")
    imp.add_argument("project", help="project folder or name")
    imp.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="values",
                     help="value of an open input (repeatable)")
    imp.add_argument("--no-input", action="store_true",
                     help="never prompt: inputs without --set take their default, or the import fails")
    imp.add_argument("--host", metavar="HOST", help="run every run on this host (see `orch hosts list`)")
    imp.add_argument("--no-daemon", action="store_true", help="do not start the scheduler")
    add_json_flag(imp)
    imp.set_defaults(handler=_import)


def _export(args: argparse.Namespace) -> int:
    from orchestrator.app.workflows import export_workflow

    runs = [int(ref) if ref.isdigit() else ref for ref in args.runs]
    document = export_workflow(args.project, runs or None, open_params=args.open)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    if args.output.exists():
        raise UsageError(f"{args.output}: exists; choose a new file (nothing was overwritten)")
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{args.output}: cannot write the workflow ({exc.strerror or exc})") from None
    opened = document["inputs"]
    echo(f"wrote {len(document['runs'])} run(s) to {args.output}"
         + (f"; open inputs: {', '.join(opened)}" if opened else ""), err=True)
    return 0


def _show(args: argparse.Namespace) -> int:
    from orchestrator.app.workflows import read_workflow

    _parsed, plan = read_workflow(args.file)
    if args.json:
        print_json(plan.to_dict())
        return 0
    echo(f"{style(str(args.file), 'bold')}: {plan.source_format} workflow, format version {plan.version}")
    if plan.description:
        echo(f"  {plan.description}")
    for run in plan.runs:
        echo(f"  run {style(run['name'], 'bold')} ({run['protocol']})" + (f" on {run['host']}" if run["host"] else ""))
    _print_inputs(plan.inputs)
    _print_report(plan.omitted, plan.notes)
    return 0


def _import(args: argparse.Namespace) -> int:
    from orchestrator.app.access import open_project
    from orchestrator.app.workflows import import_workflow
    from orchestrator.workflow.inputs import parse_assignments

    values = parse_assignments(args.values)
    ask = None if args.no_input or not sys.stdin.isatty() else _prompt(values)
    with open_project(args.project) as project:
        outcome = import_workflow(project, args.file, values=values, ask=ask, host=args.host,
                                  start_scheduler=not args.no_daemon)
    if args.json:
        print_json(outcome.to_dict())
        return 0
    _print_report(outcome.omitted, outcome.notes)
    for run in outcome.runs:
        echo(f"queued run {style(run.name, 'bold')} (id {run.id}, {run.protocol})")
    echo(f"follow them: orch status {args.project}")
    return 0


def _prompt(given: dict[str, str]) -> Any:
    """Ask for an input on the terminal, its default offered (Enter keeps it)."""
    from rich.prompt import Prompt

    def ask(item: Any) -> Any:
        if item.name in given:
            return given[item.name]
        question = f"{item.label or item.name} [dim]({item.name}, {item.type})[/dim]"
        if item.help:
            echo(f"  {item.help}")
        if item.has_default:
            return Prompt.ask(question, default=str(item.default) if item.default is not None else "")
        return Prompt.ask(question)
    return ask


def _print_inputs(inputs: dict[str, dict[str, Any]]) -> None:
    if not inputs:
        echo("  no open inputs")
        return
    echo("  open inputs (give them with --set NAME=VALUE):")
    for name, item in inputs.items():
        default = f", default {item['default']!r}" if "default" in item else ", no default"
        echo(f"    {style(name, 'bold')}: {item.get('label', name)} ({item.get('type', 'str')}{default})")


def _print_report(omitted: list[Any], notes: list[str]) -> None:
    for item in omitted:
        echo(style(f"left out: {item.label} ({item.kind}, Scipion id {item.source_id}): {item.reason}", "yellow"),
             err=True)
    for note in notes:
        echo(f"note: {note}", err=True)
