"""``orch run``: queue a run (from a protocol and params, a workflow file, or an earlier run).

The run is created and queued in the project store, then the project's scheduler is
started detached unless one already runs (``--no-daemon`` leaves that to ``orch daemon``).
With ``--wait`` the command follows the run(s) in the store with a progress bar and exits
with their outcome, so a script can trust the code: 0 finished, 1 failed, 4 cancelled,
124 still not done after ``--timeout``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from orchestrator.cli.output import console, err_console, print_json, print_table
from orchestrator.cli.status_cmd import plain_rows
from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import planner
from orchestrator.scheduler.control import restart_run
from orchestrator.scheduler.daemon import ensure_daemon, running_pid
from orchestrator.store import ProjectStore, RunRecord, RunState, StepState
from orchestrator.workflow import load_workflow, submit_workflow

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

# How long --wait lets the scheduler be gone before starting it again (it may be between
# an idle exit and the next start, or it crashed).
DAEMON_GRACE_S = 5.0


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
    project = Project.load(args.project)
    registry = discover()
    with project.open_store() as store:
        if args.workflow is not None:
            runs = submit_workflow(load_workflow(args.workflow), registry, store, project, host=args.host)
        elif args.restart is not None:
            runs = [restart_run(store, args.restart)]
        else:
            params = parse_params(args.params)
            runs = [planner.create_run(store, project, registry, args.protocol, params, name=args.name,
                                       host=args.host or "local")]
        if not args.json:
            for run in runs:
                console.print(f"queued run [bold]{escape(run.name)}[/] (id {run.id}, {run.protocol})")
        if not args.no_daemon:
            _ensure_daemon(project)
        if not (args.wait or args.timeout is not None):
            if args.json:
                print_json({"runs": [_run_json(run) for run in runs]})
            return 0
        final = wait_for_runs(store, project, [run.id for run in runs], args.timeout,
                              restart_daemon=not args.no_daemon, show_progress=not args.json)
    if args.json:
        print_json({"runs": [_run_json(run) for run in final]})
    else:
        _print_outcome(final)
    return outcome_code(final)


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


def _ensure_daemon(project: Project) -> int:
    try:
        return ensure_daemon(project)
    except RuntimeError as exc:  # the scheduler process died at start: its log says why
        raise OrchestratorError(f"cannot start the scheduler of project {project.name}: {exc}") from None


def _describe(args: argparse.Namespace) -> int:
    # `orch run PROTOCOL --describe` works too: a lone positional is then the protocol
    name = args.protocol or args.project
    if args.params:
        raise UsageError("--describe takes no params")
    info = discover().protocol(name).describe()
    if args.json:
        print_json(info)
        return 0
    console.print(f"[bold]{info['name']}[/] - {escape(info['label'])}")
    if info["help"]:
        console.print(escape(info["help"]))
    rows = []
    for param in info["params"]:
        default = "(required)" if param["required"] else ("" if param["default"] is None else param["default"])
        kind = param["kind"] + (f" -> {param['type_name']}" if param.get("type_name") else "")
        extra = f" [only if {param['condition']}]" if param.get("condition") else ""
        rows.append((param["name"], kind, _json_text(default), (param["help"] or "") + extra))
    print_table("params (KEY=VALUE)", ["name", "type", "default", "help"], plain_rows(rows))
    if info["outputs"]:
        console.print("outputs: " + ", ".join(f"{name} ({kind})" for name, kind in info["outputs"].items()))
    if info["citations"]:
        console.print(f"citations: {len(info['citations'])} (see `orch plugins show {info['name']}`)")
    return 0


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------- waiting
def outcome_code(runs: Sequence[RunRecord]) -> int:
    """One exit code for runs waited on: not all done -> 124, else failed > cancelled > finished."""
    states = {run.run_state for run in runs}
    if any(not state.is_final for state in states):
        return EXIT_TIMED_OUT
    if RunState.FAILED in states:
        return EXIT_FAILED
    if RunState.CANCELLED in states:
        return EXIT_CANCELLED
    return EXIT_FINISHED


def wait_for_runs(store: ProjectStore, project: Project, run_ids: Sequence[int], timeout_s: float | None,
                  *, restart_daemon: bool = True, show_progress: bool = True,
                  poll_s: float = 0.25) -> list[RunRecord]:
    """Follow runs in the store until all are final or ``timeout_s`` passes; their last records.

    With ``restart_daemon`` a scheduler that is gone while runs are still queued or running
    (it crashed, or idled out just as they were queued) is started again.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    gone_since: float | None = None
    with _RunProgress(show_progress) as progress:
        while True:
            runs = [store.runs.get(run_id) for run_id in run_ids]
            for run in runs:
                progress.update(run, store.steps.counts(run.id))
            if all(run.run_state.is_final for run in runs):
                return runs
            if deadline is not None and time.monotonic() >= deadline:
                return runs
            if restart_daemon:
                if running_pid(project) is not None:
                    gone_since = None
                elif gone_since is None:
                    gone_since = time.monotonic()
                elif time.monotonic() - gone_since > DAEMON_GRACE_S:
                    err_console.print("the scheduler is not running: starting it again")
                    _ensure_daemon(project)
                    gone_since = None
            time.sleep(poll_s)


class _RunProgress:
    """One rich progress bar per run: finished steps out of the run's steps."""

    def __init__(self, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
            console=err_console, disable=not enabled, transient=False)
        self.tasks: dict[int, TaskID] = {}

    def __enter__(self) -> _RunProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, run: RunRecord, counts: dict[str, int]) -> None:
        total = sum(counts.values())
        finished = counts.get(StepState.FINISHED.value, 0)
        others = ", ".join(f"{counts[s.value]} {s.value}" for s in StepState
                           if s is not StepState.FINISHED and counts.get(s.value))
        detail = run.state + (f" ({others})" if others else "")
        if run.id not in self.tasks:
            self.tasks[run.id] = self.progress.add_task(escape(run.name), total=total or None, detail=detail)
        self.progress.update(self.tasks[run.id], completed=finished, total=total or None, detail=detail)


def _print_outcome(runs: Sequence[RunRecord]) -> None:
    for run in runs:
        if run.run_state is RunState.FINISHED:
            console.print(f"run [bold]{escape(run.name)}[/] finished")
        elif run.run_state.is_final:
            reason = f": {escape(run.error.splitlines()[0])}" if run.error else ""
            err_console.print(f"run [bold]{escape(run.name)}[/] {run.state}{reason}")
        else:
            err_console.print(f"run [bold]{escape(run.name)}[/] is still {run.state}: timed out waiting "
                              f"(follow it with `orch status` / `orch logs -f`)")


def _run_json(run: RunRecord) -> dict[str, Any]:
    return {"id": run.id, "name": run.name, "protocol": run.protocol, "state": run.state,
            "params": run.params, "error": run.error}
