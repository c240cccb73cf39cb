"""``orch run``: queue a run (from a protocol and params, a workflow file, or an earlier run).

The run is created and queued in the project store, then the project's scheduler is
started detached unless one already runs (``--no-daemon`` leaves that to ``orch daemon``).
With ``--wait`` the command follows the run(s) in the store with a progress bar and exits
with their outcome, so a script can trust the code: 0 finished, 1 failed, 4 cancelled,
124 still not done after ``--timeout``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.cli.output import echo, print_json, print_table, style
from orchestrator.errors import UsageError

if TYPE_CHECKING:  # the layer is imported by the handler: building the parser loads no store
    from orchestrator.app.records import RunInfo

EXIT_FINISHED = 0
EXIT_FAILED = 1
EXIT_CANCELLED = 4
EXIT_TIMED_OUT = 124

EPILOG = """examples:
  orch run myproj testkit.fanout count=8                 queue a run, start the scheduler
  orch run myproj testkit.fanout count=8 --name fan --wait --timeout 600
  orch run myproj testkit.chain source=produce.files     a pointer: run name (or id) . output
  orch run myproj testkit.fanout --describe              the protocol's params, types, defaults
  orch run myproj --workflow examples/workflow-testkit.json --wait
  orch run myproj --restart fan --wait                   re-queue; unchanged steps are skipped

exit codes (with --wait): 0 finished, 1 failed, 4 cancelled, 124 timed out;
  2 bad arguments or params, 3 no such project, protocol or run.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="queue a protocol run (or a workflow file) and optionally wait for it", epilog=EPILOG,
        description="Create and queue a run; the project's scheduler is started detached when needed.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", help="project folder or name")
    parser.add_argument("protocol", nargs="?", help="protocol name, e.g. testkit.fanout (see `orch plugins`)")
    parser.add_argument("params", nargs="*", metavar="KEY=VALUE", help="protocol params")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--workflow", type=Path, metavar="FILE",
                        help='create the runs of a JSON workflow file: {"runs": [{"name", "protocol", "params"}]}')
    source.add_argument("--restart", metavar="RUN", help="re-queue an existing run (id or name) with its params")
    source.add_argument("--describe", action="store_true", help="print the protocol's params and exit")
    parser.add_argument("--name", help="name of the new run (default: <protocol>-<id>)")
    parser.add_argument("--host", default=None, metavar="HOST",
                        help="execution host from the hosts files (default: local; see `orch hosts list`)")
    parser.add_argument("--wait", action="store_true", help="follow the run(s) until they end; exit with the outcome")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="wait at most S seconds (implies --wait); then exit 124")
    parser.add_argument("--no-daemon", action="store_true",
                        help="do not start the scheduler (start it with `orch daemon PROJECT`)")
    parser.add_argument("--json", action="store_true", help="print the queued (and, with --wait, final) runs as JSON")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    if args.describe:
        return _describe(args)
    _check_args(args)
    from orchestrator.app import runs as app_runs
    from orchestrator.app.access import open_project

    start = not args.no_daemon
    with open_project(args.project) as project:
        if args.workflow is not None:
            queued = app_runs.submit_workflow(project, args.workflow, host=args.host, start_scheduler=start)
        elif args.restart is not None:
            queued = [app_runs.restart_run(project, args.restart, start_scheduler=start)]
        else:
            queued = [app_runs.submit_run(project, args.protocol, parse_params(args.params), name=args.name,
                                          host=args.host, start_scheduler=start)]
        if not args.json:
            for run in queued:
                echo(f"queued run {style(run.name, 'bold')} (id {run.id}, {run.protocol})")
        if not (args.wait or args.timeout is not None):
            if args.json:
                print_json({"runs": [_run_json(run) for run in queued]})
            return 0
        final = _wait(project, [run.id for run in queued], args.timeout, restart=start, bars=not args.json)
    if args.json:
        print_json({"runs": [_run_json(run) for run in final]})
    else:
        _print_outcome(final)
    return outcome_code(final)


def _wait(project: Any, run_ids: list[int], timeout_s: float | None, *, restart: bool, bars: bool) -> list[RunInfo]:
    from orchestrator.app.runs import wait_for_runs
    from orchestrator.cli.progress import RunBars

    def restarted(pid: int) -> None:
        echo(f"the scheduler is not running: started it again (pid {pid})", err=True)

    with RunBars(bars) as progress:
        return wait_for_runs(project, run_ids, timeout_s, on_progress=progress.update, restart_scheduler=restart,
                             on_scheduler_restart=restarted)


def _check_args(args: argparse.Namespace) -> None:
    if args.workflow is not None or args.restart is not None:
        option = "--workflow" if args.workflow is not None else "--restart"
        if args.protocol is not None:
            raise UsageError(f"{option} takes no protocol or params (got {args.protocol!r})")
        if args.name is not None:
            raise UsageError(f"{option} takes no --name (a workflow names its runs; a restart keeps its name)")
    elif args.protocol is None:
        raise UsageError("name a protocol (e.g. `orch run PROJECT testkit.noop count=2`), "
                         "or give --workflow FILE or --restart RUN")
    if args.timeout is not None and args.timeout < 0:
        raise UsageError(f"--timeout {args.timeout:g}: must be 0 or more seconds")


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; the protocol coerces the strings."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"param {item!r}: expected KEY=VALUE (e.g. count=4)")
        if key in params:
            raise UsageError(f"param '{key}' is given twice")
        params[key] = value
    return params


def _describe(args: argparse.Namespace) -> int:
    # `orch run PROTOCOL --describe` works too: a lone positional is then the protocol
    name = args.protocol or args.project
    if args.params:
        raise UsageError("--describe takes no params")
    from orchestrator.app.plugins import describe_protocol

    info = describe_protocol(name)
    if args.json:
        print_json(info)
        return 0
    echo(f"{style(info.name, 'bold')} - {info.label}")
    if info.help:
        echo(info.help)
    rows = []
    for param in info.params:
        default = "(required)" if param["required"] else ("" if param["default"] is None else param["default"])
        kind = param["kind"] + (f" -> {param['type_name']}" if param.get("type_name") else "")
        extra = f" [only if {param['condition']}]" if param.get("condition") else ""
        rows.append((param["name"], kind, _json_text(default), (param["help"] or "") + extra))
    print_table("params (KEY=VALUE)", ["name", "type", "default", "help"], rows)
    if info.outputs:
        echo("outputs: " + ", ".join(f"{name} ({kind})" for name, kind in info.outputs.items()))
    if info.citations:
        echo(f"citations: {len(info.citations)} (see `orch plugins show {info.name}`)")
    return 0


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------- outcome
def outcome_code(runs: Sequence[RunInfo]) -> int:
    """One exit code for runs waited on: not all done -> 124, else failed > cancelled > finished."""
    from orchestrator.app.runs import outcome

    combined = outcome(runs)
    return EXIT_TIMED_OUT if combined is None else EXIT_CODES[combined.value]


EXIT_CODES = {"finished": EXIT_FINISHED, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}


def _print_outcome(runs: Sequence[RunInfo]) -> None:
    for run in runs:
        if run.state == "finished":
            echo(f"run {style(run.name, 'bold')} finished")
        elif run.run_state.is_final:
            reason = f": {run.error.splitlines()[0]}" if run.error else ""
            echo(f"run {style(run.name, 'bold', err=True)} {run.state}{reason}", err=True)
        else:
            echo(f"run {style(run.name, 'bold', err=True)} is still {run.state}: timed out waiting "
                 f"(follow it with `orch status` / `orch logs -f`)", err=True)


def _run_json(run: RunInfo) -> dict[str, Any]:
    return {"id": run.id, "name": run.name, "protocol": run.protocol, "state": run.state,
            "params": run.params, "error": run.error}
