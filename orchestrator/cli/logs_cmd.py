"""``orch logs PROJECT RUN [STEP]``: a run's step logs, or its event log, optionally followed.

Step logs live in ``<project>/runs/<run>/logs/<step>.log`` (the worker sends the step's
stdout and stderr there, every attempt appended). Without STEP every step's log is
printed with a header, in step order. ``--events`` prints the run's events from the store
instead. ``-f`` keeps printing what is new until the run ends (or Ctrl-C), like ``tail -f``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.cli.output import err_console, print_json
from orchestrator.cli.status_cmd import as_utc, in_start_order
from orchestrator.errors import NotFoundError, UsageError
from orchestrator.objects.params import suggest
from orchestrator.project import Project
from orchestrator.store import EventRecord, ProjectStore, RunRecord, StepRecord

EPILOG = """examples:
  orch logs myproj fanout-3                  every step's log, each under a header
  orch logs myproj fanout-3 gather           one step's log
  orch logs myproj fanout-3 -f               follow new lines until the run ends (or Ctrl-C)
  orch logs myproj fanout-3 --events         the run's state changes, from the store
  orch logs myproj fanout-3 --events --json  the same as JSON

exit codes: 0 shown, 3 no such project, run or step, 2 bad arguments.
"""

FOLLOW_POLL_S = 0.25


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "logs", help="print (or follow) a run's step logs or its event log",
        description="Print the logs of a run's steps (stdout and stderr of every attempt), or its events.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", help="project folder or name")
    parser.add_argument("run", help="run id or name")
    parser.add_argument("step", nargs="?", help="one step's log (default: all steps)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the run ends")
    parser.add_argument("--events", action="store_true", help="print the run's event log instead of step logs")
    parser.add_argument("--json", action="store_true", help="with --events: print the events as JSON")
    parser.set_defaults(handler=_logs)


def log_path(project: Project, run: RunRecord, step_name: str) -> Path:
    return project.run_dir(run.name) / "logs" / f"{step_name}.log"


def _logs(args: argparse.Namespace) -> int:
    try:
        return _show(args)
    except BrokenPipeError:  # `orch logs ... | head`: the reader has seen enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit-time flush does not fail again
        return 0


def _show(args: argparse.Namespace) -> int:
    if args.json and not args.events:
        raise UsageError("--json goes with --events (step logs are plain text)")
    if args.json and args.follow:
        raise UsageError("--json cannot follow; use --events -f for a live view")
    project = Project.load(args.project)
    with project.open_store() as store:
        run = store.runs.get(args.run)
        steps = in_start_order(store.steps.list(run.id))
        if args.step is not None:
            steps = [_find_step(run, steps, args.step)]
        if args.events:
            return _events(store, run, args, steps[0].id if args.step is not None else None)
        tails = {step.name: _LogTail(log_path(project, run, step.name)) for step in steps}
        if not args.follow:
            _print_logs(tails, headers=args.step is None, steps=steps)
            return 0
        return _follow_logs(store, project, run, tails, headers=args.step is None, one_step=args.step)


def _find_step(run: RunRecord, steps: Sequence[StepRecord], name: str) -> StepRecord:
    for step in steps:
        if step.name == name:
            return step
    names = [s.name for s in steps]
    if not names:
        raise NotFoundError(f"run {run.name} has no steps yet (it is {run.state})")
    listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    raise NotFoundError(f"run {run.name} has no step {name!r}{suggest(name, names)}; its steps: {listed}")


# ---------------------------------------------------------------------- step logs
@dataclass
class _LogTail:
    """A log file read from where the last read stopped; only whole lines until ``final``."""

    path: Path
    offset: int = 0
    pending: bytes = b""

    def read_new(self, final: bool = False) -> str:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            data = b""
        self.offset += len(data)
        data = self.pending + data
        if final:
            self.pending = b""
        else:
            cut = data.rfind(b"\n") + 1
            data, self.pending = data[:cut], data[cut:]
        return data.decode("utf-8", errors="replace")


class _Writer:
    """Writes chunks of several logs to stdout, with a header whenever the source changes."""

    def __init__(self, headers: bool) -> None:
        self.headers = headers
        self.current: str | None = None

    def write(self, name: str, text: str, always_header: bool = False) -> None:
        if not text and not always_header:
            return
        if self.headers and name != self.current:
            if self.current is not None:
                sys.stdout.write("\n")
            sys.stdout.write(f"==> {name} <==\n")
        self.current = name
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()


def _print_logs(tails: dict[str, _LogTail], headers: bool, steps: Sequence[StepRecord]) -> None:
    writer = _Writer(headers)
    missing = []
    for step in steps:
        tail = tails[step.name]
        if not tail.path.exists():
            missing.append(f"{step.name} ({step.state})")
            continue
        text = tail.read_new(final=True)
        writer.write(step.name, text, always_header=True)
        if not text and not headers:
            err_console.print(f"step {step.name} ({step.state}) has written nothing to its log")
    if missing and (not headers or len(missing) < len(steps)):
        err_console.print(f"no log yet for: {', '.join(missing[:10])}"
                          + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    elif missing:
        err_console.print("no step has written a log yet")


def _follow_logs(store: ProjectStore, project: Project, run: RunRecord, tails: dict[str, _LogTail],
                 headers: bool, one_step: str | None) -> int:
    writer = _Writer(headers)
    while True:
        current = store.runs.get(run.id)
        final = current.run_state.is_final
        if one_step is None:
            for step in store.steps.list(run.id):  # steps appear when the scheduler plans the run
                tails.setdefault(step.name, _LogTail(log_path(project, run, step.name)))
        for name, tail in tails.items():
            writer.write(name, tail.read_new(final=final))
        if final:
            err_console.print(f"run {run.name} {current.state}")
            return 0
        time.sleep(FOLLOW_POLL_S)


# ---------------------------------------------------------------------- events
def _events(store: ProjectStore, run: RunRecord, args: argparse.Namespace, step_id: int | None) -> int:
    """Print the run's events (only one step's with ``step_id``), following them with -f."""
    names = {step.id: step.name for step in store.steps.list(run.id)}

    def wanted(events: list[EventRecord]) -> list[EventRecord]:
        return events if step_id is None else [e for e in events if e.step_id == step_id]

    if not args.follow:
        events = wanted(store.events.list(run_id=run.id))
        if args.json:
            print_json([event_json(event, names) for event in events])
        else:
            for event in events:
                sys.stdout.write(event_line(event, names) + "\n")
        return 0
    last_id = 0
    while True:
        final = store.runs.get(run.id).run_state.is_final  # read first: its final event is then in the list
        events = store.events.list(run_id=run.id, after_id=last_id)
        if events:
            last_id = events[-1].id
        for event in wanted(events):
            if event.step_id is not None and event.step_id not in names:
                names.update({step.id: step.name for step in store.steps.list(run.id)})
            sys.stdout.write(event_line(event, names) + "\n")
        sys.stdout.flush()
        if final:
            return 0
        time.sleep(FOLLOW_POLL_S)


def event_json(event: EventRecord, names: dict[int, str]) -> dict[str, Any]:
    return {"id": event.id, "time": as_utc(event.time), "kind": event.kind,
            "step": names.get(event.step_id) if event.step_id is not None else None,
            "state": event.state, "host": event.host, "job_id": event.job_id, "message": event.message}


def event_line(event: EventRecord, names: dict[int, str]) -> str:
    when = as_utc(event.time)
    stamp = when.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if when else "-"
    if event.step_id is not None:
        what = f"step {names.get(event.step_id, f'#{event.step_id}')}"
    else:
        what = event.kind
    parts = [stamp, what]
    if event.state:
        parts.append(event.state)
    if event.host:
        parts.append(f"on {event.host}" + (f" job {event.job_id}" if event.job_id else ""))
    if event.message:
        parts.append("- " + event.message.rstrip().replace("\n", "\n    "))  # later lines indented
    return " ".join(parts)
