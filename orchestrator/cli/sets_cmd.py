"""``orch sets PROJECT`` and ``orch sets PROJECT --show SET_ID --where ...``: look into stored sets."""

from __future__ import annotations

import argparse

from orchestrator.cli.output import add_json_flag, print_json, print_table

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
    parser.add_argument("--offset", type=int, default=0, help="matching items to skip first (default 0)")
    add_json_flag(parser)
    parser.set_defaults(handler=_sets)


def _sets(args: argparse.Namespace) -> int:
    from orchestrator.app import sets

    if args.show is None:
        listed = sets.list_sets(args.project)
        if args.json:
            print_json(listed)
        else:
            print_table("sets", ["id", "run", "name", "type", "size", "stream"],
                        [(s.id, s.run_id, s.name, s.item_type, s.size, s.stream_state) for s in listed])
        return 0
    columns = args.columns.split(",") if args.columns else None
    page = sets.query_set(args.project, args.show, args.where, columns, offset=args.offset, limit=args.limit)
    if args.json:
        print_json(page.items)
    else:
        print_table(f"set {page.set.id} {page.set.name} ({page.set.item_type})", page.columns,
                    [[item[name] for name in page.columns] for item in page.items])
    return 0
