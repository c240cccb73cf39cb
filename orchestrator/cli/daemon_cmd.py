"""``orch daemon PROJECT``: run, start, inspect or stop the project's scheduler.

By default the scheduler runs in the foreground (logging to stderr) until it has been
idle for ``--idle-exit`` seconds, or forever without it; Ctrl-C or SIGTERM stop it
cleanly. ``--detach`` starts it in the background (as ``orch run`` does), ``--status``
says whether one runs, ``--stop`` asks it to stop and waits until it has.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time

from orchestrator.cli.output import console, err_console, print_json
from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.project import Project
from orchestrator.scheduler.daemon import DEFAULT_IDLE_EXIT_S, LOG_FILE, ensure_daemon, running_pid, serve

EPILOG = f"""examples:
  orch daemon myproj                       run the scheduler here until Ctrl-C
  orch daemon myproj --idle-exit 30        ... and exit after 30 s with nothing queued or running
  orch daemon myproj --detach              start it in the background (idle exit {DEFAULT_IDLE_EXIT_S:g} s)
  orch daemon myproj --status [--json]     pid of the running scheduler, or "not running"
  orch daemon myproj --stop                SIGTERM it and wait until it is gone

exit codes: 0 ok (--status: running), 3 --status: not running / no such project,
  1 another scheduler already runs (foreground) or it failed to start, 124 --stop timed out.
"""

EXIT_NOT_RUNNING = 3
EXIT_TIMED_OUT = 124


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "daemon", help="run (or start, inspect, stop) the project's scheduler",
        description="The project's scheduler: one per project; it runs queued runs' steps on the local host.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", help="project folder or name")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--detach", action="store_true", help="start it in the background and return")
    action.add_argument("--status", action="store_true", help="print its pid, or 'not running' (exit 3)")
    action.add_argument("--stop", action="store_true", help="send it SIGTERM and wait until it exits")
    parser.add_argument("--idle-exit", type=float, metavar="S",
                        help="exit after S seconds with nothing queued or running (0: never; default: never "
                             f"in the foreground, {DEFAULT_IDLE_EXIT_S:g} with --detach)")
    parser.add_argument("--workers", type=int, metavar="N", help="worker processes (default: one per core)")
    parser.add_argument("--retries", type=int, metavar="N",
                        help="retries of a failed step when its protocol sets none (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="with --stop: how long to wait for it to exit (default 60)")
    parser.add_argument("--json", action="store_true", help="with --status: print JSON")
    parser.set_defaults(handler=_daemon)


def _daemon(args: argparse.Namespace) -> int:
    _check_args(args)
    project = Project.load(args.project)
    if args.status:
        return _status(project, args.json)
    if args.stop:
        return _stop(project, args.timeout)
    if args.detach:
        return _detach(project, args.idle_exit)
    return _foreground(project, args)


def _check_args(args: argparse.Namespace) -> None:
    if args.json and not args.status:
        raise UsageError("--json goes with --status")
    if args.idle_exit is not None and args.idle_exit < 0:
        raise UsageError(f"--idle-exit {args.idle_exit:g}: must be 0 or more seconds")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers}: must be 1 or more")
    if args.retries is not None and args.retries < 0:
        raise UsageError(f"--retries {args.retries}: must be 0 or more")
    if (args.status or args.stop) and (args.idle_exit is not None or args.workers or args.retries is not None):
        raise UsageError("--idle-exit, --workers and --retries set up a scheduler; they do not go with "
                         "--status or --stop")
    if args.detach and (args.workers or args.retries is not None):
        raise UsageError("--workers and --retries work in the foreground only for now; run "
                         "`orch daemon PROJECT --workers N` (e.g. under nohup or systemd) instead of --detach")


def _status(project: Project, as_json: bool) -> int:
    pid = running_pid(project)
    if as_json:
        print_json({"project": project.name, "running": pid is not None, "pid": pid})
    elif pid is None:
        console.print("not running")
    else:
        console.print(f"running (pid {pid})")
    return 0 if pid is not None else EXIT_NOT_RUNNING


def _stop(project: Project, timeout_s: float) -> int:
    pid = running_pid(project)
    if pid is None:
        console.print("not running")
        return 0
    if pid <= 0:
        raise OrchestratorError(f"{project.path / 'scheduler.lock'} is held but names no pid; "
                                "find the scheduler process (`orchestrator.scheduler.daemon`) and stop it")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it exited between the check and the signal
    except PermissionError:
        raise OrchestratorError(f"scheduler pid {pid} belongs to another user; cannot stop it") from None
    deadline = time.monotonic() + timeout_s
    while running_pid(project) is not None:
        if time.monotonic() > deadline:
            err_console.print(f"the scheduler (pid {pid}) is still running after {timeout_s:g} s")
            return EXIT_TIMED_OUT
        time.sleep(0.1)
    console.print(f"stopped the scheduler (pid {pid})")
    return 0


def _detach(project: Project, idle_exit_s: float | None) -> int:
    before = running_pid(project)
    if before is not None:
        console.print(f"already running (pid {before})")
        return 0
    try:
        pid = ensure_daemon(project, DEFAULT_IDLE_EXIT_S if idle_exit_s is None else idle_exit_s)
    except RuntimeError as exc:  # it died at start; its log says why
        raise OrchestratorError(f"cannot start the scheduler of project {project.name}: {exc}") from None
    console.print(f"started the scheduler (pid {pid}); its log: {project.path / LOG_FILE}")
    return 0


def _foreground(project: Project, args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code = serve(project, args.idle_exit or None, args.workers, args.retries)
    except KeyboardInterrupt:  # Ctrl-C is the normal way to stop a foreground scheduler
        err_console.print("scheduler stopped")
        return 0
    if code != 0:
        pid = running_pid(project)
        err_console.print(f"a scheduler already runs for project {project.name}"
                          + (f" (pid {pid})" if pid else "") + "; see `orch daemon PROJECT --status`")
        return 1
    return 0
