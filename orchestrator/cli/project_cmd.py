"""``orch project create|list|delete|info``."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.cli.output import add_json_flag, console, print_json, print_table
from orchestrator.errors import UsageError
from orchestrator.project import Project, Registry

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
    project = Project.create(Path(args.path), args.name, args.store)
    console.print(f"created project [bold]{project.name}[/] in {project.path}")
    return 0


def _list(args: argparse.Namespace) -> int:
    entries = Registry().entries()
    rows = [{"name": name, "path": str(path), "exists": (path / "project.json").exists()}
            for name, path in entries.items()]
    if args.json:
        print_json(rows)
    elif not rows:
        console.print("no projects yet: create one with `orch project create PATH`")
    else:
        print_table("projects", ["name", "path", "state"],
                    [(r["name"], r["path"], "ok" if r["exists"] else "missing") for r in rows])
    return 0


def _info(args: argparse.Namespace) -> int:
    project = Project.load(args.project)
    with project.open_store() as store:
        runs = store.runs.list()
        sets = store.list_sets()
        data = {"name": project.name, "path": str(project.path), "store": store.where,
                "runs": len(runs), "sets": len(sets), "items": sum(s["size"] for s in sets)}
    if args.json:
        print_json(data)
    else:
        print_table(f"project {project.name}", ["key", "value"], list(data.items()))
    return 0


def _delete(args: argparse.Namespace) -> int:
    project = Project.load(args.project)
    if not args.yes:
        answer = input(f"delete project {project.name} at {project.path} and all its runs? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise UsageError("not deleted")
    project.delete()
    console.print(f"deleted project {project.name}")
    return 0
