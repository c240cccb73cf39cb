"""``orch web PROJECT | --all``: the web interface, on 127.0.0.1 behind a login token."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.errors import UsageError

EPILOG = """examples:
  orch web myproj                      serve one project; open the printed link
  orch web --all                       every project of your list (create and delete them there too)
  orch web myproj --port 9000          another port
  ssh -L 8765:127.0.0.1:8765 login01   on your laptop, to reach a server started on the cluster's login node

The server listens on 127.0.0.1 only unless --bind says otherwise; the link it prints carries
a login token made at each start. Stop it with Ctrl-C.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "web", help="serve the web interface (projects, live flowchart, forms, viewers)", epilog=EPILOG,
        description="Serve the web interface for some projects or all of them.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("projects", nargs="*", metavar="PROJECT", help="project folders or names to serve")
    parser.add_argument("--all", action="store_true", help="serve every project of your list")
    parser.add_argument("--port", type=int, default=None, help="port to listen on (default 8765)")
    parser.add_argument("--bind", default=None, metavar="ADDRESS",
                        help="address to listen on (default 127.0.0.1; another exposes the server to the network)")
    parser.set_defaults(handler=_web)


def _web(args: argparse.Namespace) -> int:
    if bool(args.projects) == bool(args.all):
        raise UsageError("name the projects to serve, or give --all (not both)")
    try:
        from orchestrator.web.server import serve
        from orchestrator.web.settings import DEFAULT_BIND, DEFAULT_PORT, WebSettings
    except ModuleNotFoundError as exc:
        raise UsageError(f"the web interface needs {exc.name}: pip install 'em-orchestrator[web]'") from None
    from orchestrator.app.access import load_project

    folders = None if args.all else tuple(Path(load_project(ref).path) for ref in args.projects)
    port = DEFAULT_PORT if args.port is None else args.port
    if not 0 < port < 65536:
        raise UsageError(f"--port {port}: expected 1-65535")
    settings = WebSettings(projects=folders, bind=args.bind or DEFAULT_BIND, port=port)
    try:
        serve(settings)
    except KeyboardInterrupt:
        pass
    return 0
