"""The ``orch`` command: a thin front end over the application layer (:mod:`orchestrator.app`).

Each sub-command lives in its own module under ``orchestrator.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` to a function
``handler(args) -> int`` that parses, calls the layer and prints (:mod:`.output`). Listing the
modules here (not scanning) keeps the command set explicit, and start-up fast: building every
parser imports no store, scheduler or plugin, because a handler imports the layer's module it
calls only when it runs (``orch --help`` answers in a fraction of a second).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from orchestrator import __version__
from orchestrator.errors import OrchestratorError

COMMAND_MODULES: tuple[str, ...] = (
    "orchestrator.cli.project_cmd",
    "orchestrator.cli.sets_cmd",
    "orchestrator.cli.plugins_cmd",
    "orchestrator.cli.run_cmd",
    "orchestrator.cli.status_cmd",
    "orchestrator.cli.logs_cmd",
    "orchestrator.cli.show_cmd",
    "orchestrator.cli.lineage_cmd",
    "orchestrator.cli.export_cmd",
    "orchestrator.cli.workflow_cmd",
    "orchestrator.cli.replay_cmd",
    "orchestrator.cli.compare_cmd",
    "orchestrator.cli.cancel_cmd",
    "orchestrator.cli.daemon_cmd",
    "orchestrator.cli.hosts_cmd",
    "orchestrator.cli.queue_cmd",
    "orchestrator.cli.transfer_cmd",
    "orchestrator.cli.web_cmd",
)

EPILOG = """examples:
  orch project create myproj            create a project folder with its store
  orch project list --json              list known projects as JSON
  orch plugins                          list installed plugins and their state
  orch run myproj emtools.simulate n_micrographs=12 particles_per_micrograph=100 --wait
  orch status myproj                    runs and steps, read from the store alone
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orch",
        description="em-orchestrator: run cryo-EM protocols on local, SSH and cluster hosts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"orch {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # a command whose module is not installed in this build
            print(f"orch: warning: command module {module_name} cannot load: {exc}", file=sys.stderr)
            continue
        except ImportError as exc:  # one broken command must not take the others down
            print(f"orch: warning: command module {module_name} cannot load: {exc}", file=sys.stderr)
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except OrchestratorError as exc:
        print(f"orch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("orch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `orch status | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if not _is_database_error(exc):
            raise
        # a store that broke after it was opened (disk full, damage)
        print(f"orch: error: project store: {getattr(exc, 'orig', None) or exc}", file=sys.stderr)
        return 1


def _is_database_error(exc: Exception) -> bool:
    """Whether ``exc`` is SQLAlchemy's DatabaseError; asked without importing SQLAlchemy (a command
    that raised one has loaded it already)."""
    module = sys.modules.get("sqlalchemy.exc")
    database_error = getattr(module, "DatabaseError", None)
    return database_error is not None and isinstance(exc, database_error)


if __name__ == "__main__":
    sys.exit(main())
