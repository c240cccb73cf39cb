"""``orch sets PROJECT`` and ``orch sets show PROJECT SET_ID --where ...``: look into stored sets."""

from __future__ import annotations

import argparse

from orchestrator.cli.output import add_json_flag, print_json, print_table
from orchestrator.project import Project
from orchestrator.store.set_query import parse_condition

EPILOG = """examples:
  orch sets myproj                                  every set with its type and size
  orch sets myproj --show 3 --where micrograph_id=12 --limit 5
  orch sets myproj --show 3 --where defocus_u=15000..20000 --where class_id=1,2 --json
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sets", help="list a project's sets or show items of one", epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project")
    parser.add_argument("--show", type=int, metavar="SET_ID", help="show the items of this set")
    parser.add_argument("--where", action="append", default=[], metavar="COND",
                        help="COLUMN=V, COLUMN=A,B, COLUMN=LOW..HIGH, COLUMN<=V, COLUMN>=V (repeatable)")
    parser.add_argument("--columns", help="comma-separated columns to show")
    parser.add_argument("--limit", type=int, default=20, help="items to show (default 20)")
    add_json_flag(parser)
    parser.set_defaults(handler=_sets)


def _sets(args: argparse.Namespace) -> int:
    project = Project.load(args.project)
    with project.open_store() as store:
        if args.show is None:
            sets = store.list_sets()
            if args.json:
                print_json(sets)
            else:
                print_table("sets", ["id", "run", "name", "type", "size", "stream"],
                            [(s["id"], s["run_id"], s["name"], s["item_type"], s["size"], s["stream_state"])
                             for s in sets])
            return 0
        item_set = store.get_set(args.show)
        conditions = [parse_condition(text) for text in args.where]
        names = args.columns.split(",") if args.columns else item_set.schema.names
        rows: list[dict[str, object]] = []
        for block in item_set.iter_blocks(names, conditions):
            count = min(len(block[names[0]]), args.limit - len(rows))
            rows.extend({name: block[name][i].item() if hasattr(block[name][i], "item") else block[name][i]
                         for name in names} for i in range(count))
            if len(rows) >= args.limit:
                break
    if args.json:
        print_json(rows)
    else:
        print_table(f"set {item_set.id} {item_set.name} ({item_set.item_type})", names,
                    [[r[n] for n in names] for r in rows])
    return 0
