"""``orch daemon PROJECT``: run, start, inspect or stop the project's scheduler.

By default the scheduler runs in the foreground (logging to stderr) until it has been
idle for ``--idle-exit`` seconds, or forever without it; Ctrl-C or SIGTERM stop it
cleanly. ``--detach`` starts it in the background (as ``orch run`` does), ``--status``
says whether one runs, ``--stop`` asks it to stop and waits until it has.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from orchestrator.app.scheduler import DEFAULT_IDLE_EXIT_S
from orchestrator.cli.output import echo, print_json
from orchestrator.errors import UsageError

if TYPE_CHECKING:  # the layer is imported by the handler: building the parser loads no store
    from orchestrator.project import Project

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
    parser.add_argument("--workers", type=int, metavar="N",
                        help="local worker processes (default: [hosts.local] workers, else one per core)")
    parser.add_argument("--retries", type=int, metavar="N",
                        help="retries of a failed step when its protocol sets none (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="with --stop: how long to wait for it to exit (default 60)")
    parser.add_argument("--json", action="store_true", help="with --status: print JSON")
    parser.set_defaults(handler=_daemon)


def _daemon(args: argparse.Namespace) -> int:
    _check_args(args)
    from orchestrator.app.access import load_project

    project = load_project(args.project)
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
    from orchestrator.app.scheduler import scheduler_state

    state = scheduler_state(project)
    if as_json:
        print_json({"project": project.name, **state.to_dict()})
    else:
        echo(f"running (pid {state.pid})" if state.running else "not running")
    return 0 if state.running else EXIT_NOT_RUNNING


def _stop(project: Project, timeout_s: float) -> int:
    from orchestrator.app.scheduler import stop_scheduler

    stop = stop_scheduler(project, timeout_s)
    if not stop.was_running:
        echo("not running")
    elif not stop.stopped:
        echo(f"the scheduler (pid {stop.pid}) is still running after {timeout_s:g} s", err=True)
        return EXIT_TIMED_OUT
    else:
        echo(f"stopped the scheduler (pid {stop.pid})")
    return 0


def _detach(project: Project, idle_exit_s: float | None) -> int:
    from orchestrator.app.scheduler import start_scheduler

    start = start_scheduler(project, idle_exit_s)
    if start.already_running:
        echo(f"already running (pid {start.pid})")
    else:
        echo(f"started the scheduler (pid {start.pid}); its log: {start.log}")
    return 0


def _foreground(project: Project, args: argparse.Namespace) -> int:
    from orchestrator.app.errors import SchedulerBusyError
    from orchestrator.app.scheduler import serve_scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve_scheduler(project, args.idle_exit, args.workers, args.retries)
    except KeyboardInterrupt:  # Ctrl-C is the normal way to stop a foreground scheduler
        echo("scheduler stopped", err=True)
        return 0
    except SchedulerBusyError as exc:
        echo(f"{exc}; see `orch daemon PROJECT --status`", err=True)
        return 1
    return 0
