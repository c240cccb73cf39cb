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
from typing import TYPE_CHECKING

from orchestrator.cli.output import echo, listing, print_json
from orchestrator.errors import UsageError

if TYPE_CHECKING:  # the layer is imported by the handler: building the parser loads no store
    from orchestrator.app.events import EventInfo
    from orchestrator.app.logs import RunLogs

EPILOG = """examples:
  orch logs myproj fanout-3                  every step's log, each under a header
  orch logs myproj fanout-3 gather           one step's log
  orch logs myproj fanout-3 -f               follow new lines until the run ends (or Ctrl-C)
  orch logs myproj fanout-3 --events         the run's state changes, from the store
  orch logs myproj fanout-3 --events --json  the same as JSON

exit codes: 0 shown, 3 no such project, run or step, 2 bad arguments.
"""


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
    from orchestrator.app import events, logs

    if args.events:
        if args.follow:
            for event in events.follow_events(args.project, args.run, step=args.step):
                _write(event_line(event) + "\n")
        elif args.json:
            print_json(events.list_events(args.project, args.run, step=args.step))
        else:
            for event in events.list_events(args.project, args.run, step=args.step):
                _write(event_line(event) + "\n")
        return 0
    if args.follow:
        writer = _Writer(headers=args.step is None)
        for item in logs.follow_logs(args.project, args.run, args.step):
            if isinstance(item, logs.RunEnded):
                echo(f"run {item.run} {item.state}", err=True)
            else:
                writer.write(item.step, item.text)
        return 0
    _print_logs(logs.read_logs(args.project, args.run, args.step), headers=args.step is None)
    return 0


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


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


def _print_logs(run_logs: RunLogs, headers: bool) -> None:
    writer = _Writer(headers)
    missing = []
    for log in run_logs.logs:
        if not log.exists:
            missing.append(f"{log.step} ({log.state})")
            continue
        writer.write(log.step, log.text, always_header=True)
        if not log.text and not headers:
            echo(f"step {log.step} ({log.state}) has written nothing to its log", err=True)
    if missing and (not headers or len(missing) < len(run_logs.logs)):
        echo(f"no log yet for: {listing(missing)}", err=True)
    elif missing:
        echo("no step has written a log yet", err=True)


def event_line(event: EventInfo) -> str:
    """``2025-03-01 12:00:00.000 step b failed on local - the error``; later lines of a message indented."""
    stamp = event.time.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if event.time else "-"
    what = f"step {event.step}" if event.step is not None else event.kind
    parts = [stamp, what]
    if event.state:
        parts.append(event.state)
    if event.host:
        parts.append(f"on {event.host}" + (f" job {event.job_id}" if event.job_id else ""))
    if event.message:
        parts.append("- " + event.message.rstrip().replace("\n", "\n    "))
    return " ".join(parts)
