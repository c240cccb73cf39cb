"""``orch project create|list|delete|info``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from orchestrator.cli.output import add_json_flag, echo, print_json, print_table, style
from orchestrator.errors import UsageError

EPILOG = """examples:
  orch project create ~/em/apoferritin           SQLite store inside the folder
  orch project create shared-proj --store postgresql+psycopg://me@db/em
  orch project list --json
  orch project info apoferritin
  orch project delete apoferritin --yes
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("project", help="create, list and delete projects", epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="project_command", metavar="ACTION", required=True)

    create = sub.add_parser("create", help="create a project folder and its store")
    create.add_argument("path", help="project folder (its last part is the default name)")
    create.add_argument("--name", help="project name (default: the folder's name)")
    create.add_argument("--store", metavar="URL", help="store URL (default: SQLite file in the folder)")
    create.set_defaults(handler=_create)

    listing = sub.add_parser("list", help="list known projects")
    add_json_flag(listing)
    listing.set_defaults(handler=_list)

    info = sub.add_parser("info", help="show a project's store and counts")
    info.add_argument("project")
    add_json_flag(info)
    info.set_defaults(handler=_info)

    delete = sub.add_parser("delete", help="delete a project folder and its store")
    delete.add_argument("project")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=_delete)


def _create(args: argparse.Namespace) -> int:
    from orchestrator.app.projects import create_project

    project = create_project(args.path, args.name, args.store)
    echo(f"created project {style(project.name, 'bold')} in {project.path}")
    if project.foreign:
        folders = sum(1 for entry in project.foreign if entry.is_dir())
        echo(f"warning: the folder already holds {_count(len(project.foreign) - folders, 'file')} and "
             f"{_count(folders, 'folder')} ({_listing([entry.name for entry in project.foreign])}); they are not "
             "part of the project and `orch project delete` will leave them", err=True)
    return 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _listing(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"


def _list(args: argparse.Namespace) -> int:
    from orchestrator.app.projects import list_projects

    projects = list_projects()
    if args.json:
        print_json(projects)
    elif not projects:
        echo("no projects yet: create one with `orch project create PATH`")
    else:
        print_table("projects", ["name", "path", "state"],
                    [(p.name, p.path, "ok" if p.exists else "missing") for p in projects])
    return 0


def _info(args: argparse.Namespace) -> int:
    from orchestrator.app.projects import project_info

    info = project_info(args.project)
    if args.json:
        print_json(info)
    else:
        print_table(f"project {info.name}", ["key", "value"], list(info.to_dict().items()))
    return 0


def _delete(args: argparse.Namespace) -> int:
    from orchestrator.app.projects import delete_project, find_project

    project = find_project(args.project)
    if not args.yes:
        answer = input(f"delete project {project.name} at {project.path} and all its runs? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise UsageError("not deleted")
    deletion = delete_project(project.path)
    removed = [_in_folder(str(path), deletion.path) for path in deletion.removed]
    echo(f"deleted project {deletion.name}: removed {_listing(removed, 12) or 'nothing'}")
    reasons: dict[str, list[str]] = {}
    for left in deletion.left:
        reasons.setdefault(left.why, []).append(_in_folder(left.path, deletion.path))
    for why, names in reasons.items():
        echo(f"left {_listing(names)}: {why}")
    return 0


def _in_folder(what: str, folder: Path) -> str:
    """A path inside the project folder by its name there; anything else in full."""
    path = Path(what)
    return str(path.relative_to(folder)) if path != folder and folder in path.parents else what
