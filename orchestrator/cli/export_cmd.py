"""``orch export``: portable records of a project for other tools and archives.

``--crate DIR`` writes a Workflow Run RO-Crate of the project's runs; ``--run RUN --emdb DIR``
gathers what an EMDB deposition asks for about one map. DIR must be new or empty: an export
never writes over files.
"""

from __future__ import annotations

import argparse
from typing import Any

from orchestrator.cli.output import add_json_flag, echo, human_bytes, is_terminal, print_json, print_table, style
from orchestrator.errors import UsageError

EPILOG = """examples:
  orch export myproj --crate myproj-crate               every finished run as a Workflow Run RO-Crate
  orch export myproj --crate crate --runs refine3d,fsc  two runs (the runs they read are named, not described)
  orch export myproj --crate crate --with-data          copy the files in too (default: named with their SHA-256)
  orch export myproj --crate crate --license CC-BY-4.0  the crate's license (an SPDX id or a URL)
  orch export myproj --run refine3d --emdb deposit/     map, half maps, mask, FSC XML, image, processing

The EMDB bundle takes a finished run of emtools.refine3d, emtools.reconstruct, emtools.fsc,
relion.reconstruct, relion.autorefine or relion.postprocess; its README.txt says which file
goes where in the deposition form, and the resolution, voxel size and contour level to enter.

exit codes: 0 written, 1 cannot be written (DIR not empty, a file missing), 2 bad arguments,
3 no such project or run.
"""

_BAR_MIN_BYTES = 32 << 20  # smaller files are copied without a bar


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write a Workflow Run RO-Crate of a project, or an EMDB deposition bundle of a map",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Portable records of what a project did: an RO-Crate other tools read, or what EMDB asks for.")
    parser.add_argument("project", help="project folder or name")
    parser.add_argument("--crate", metavar="DIR", help="write a Workflow Run RO-Crate into DIR (new or empty)")
    parser.add_argument("--runs", action="append", default=[], metavar="RUN[,RUN...]",
                        help="with --crate: only these runs (id or name; repeatable; default: every finished run)")
    parser.add_argument("--with-data", action="store_true",
                        help="with --crate: copy the runs' files in (default: name them with their SHA-256)")
    parser.add_argument("--license", metavar="LICENSE",
                        help="with --crate: the crate's license, an SPDX id (CC-BY-4.0) or a URL")
    parser.add_argument("--run", metavar="RUN", help="with --emdb: the run whose map to deposit")
    parser.add_argument("--emdb", metavar="DIR", help="write the EMDB deposition bundle of --run into DIR")
    add_json_flag(parser)
    parser.set_defaults(handler=_export)


def _ref(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _export(args: argparse.Namespace) -> int:
    if bool(args.crate) == bool(args.emdb):
        raise UsageError("give one of --crate DIR or --run RUN --emdb DIR")
    if args.emdb:
        if not args.run:
            raise UsageError("--emdb DIR needs --run RUN: the run whose map goes into the bundle")
        if args.runs or args.with_data or args.license:
            raise UsageError("--runs, --with-data and --license go with --crate, not --emdb")
        return _emdb(args)
    if args.run:
        raise UsageError("--run goes with --emdb; to choose the runs of a crate use --runs RUN[,RUN...]")
    return _crate(args)


class _CopyBars:
    """A bar on stderr for each large file being copied, drawn only on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _CopyBars:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, name: str, done: int, total: int) -> None:
        if not self.enabled or total < _BAR_MIN_BYTES:
            return
        if self.progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), console=Console(stderr=True))
            self.progress.start()
        if name not in self.tasks:
            from rich.markup import escape

            self.tasks[name] = self.progress.add_task(f"copying {escape(name)}", total=total)
        self.progress.update(self.tasks[name], completed=done)


def _emdb(args: argparse.Namespace) -> int:
    from orchestrator.app.exports import export_emdb

    with _CopyBars(is_terminal(err=True) and not args.json) as bars:
        bundle = export_emdb(args.project, _ref(args.run), args.emdb, progress=bars)
    if args.json:
        print_json(bundle)
        return 0
    echo(style(f"EMDB bundle of run {bundle.run} ({bundle.protocol}) written to {bundle.folder}", "bold"))
    print_table(None, ["file", "size", "sha256"], [[f.name, human_bytes(f.size), f.sha256[:16] + "…"]
                                                  for f in bundle.files])
    reported = ("" if bundle.reported_resolution_a is None
                else f" (the run reported {bundle.reported_resolution_a:.2f} Å)")
    echo(f"resolution {bundle.resolution_a:.2f} Å at FSC 0.143{reported}; voxel size {bundle.pixel_size_a:.4f} Å, "
         f"box {bundle.box}; suggested contour level {bundle.contour_level:.4g}")
    for note in bundle.notes:
        echo(style(f"note: {note}", "dim"))
    for warning in bundle.warnings:
        echo(style(f"warning: {warning}", "yellow", err=True), err=True)
    echo(style(f"next: read {bundle.folder / 'README.txt'} for what goes where in the deposition form", "dim"))
    return 0


def _crate(args: argparse.Namespace) -> int:
    from orchestrator.app.exports import export_crate

    runs = [_ref(name.strip()) for item in args.runs for name in item.split(",") if name.strip()]
    if args.runs and not runs:
        raise UsageError("--runs: name at least one run")
    with _CopyBars(is_terminal(err=True) and not args.json) as bars:
        crate = export_crate(args.project, args.crate, runs or None, with_data=args.with_data, license=args.license,
                             progress=bars)
    if args.json:
        print_json(crate)
        return 0
    copied = (f", {crate.copied_files} copied in ({human_bytes(crate.copied_bytes)})" if args.with_data
              else " (referenced with their SHA-256; --with-data copies them in)")
    echo(style(f"Workflow Run RO-Crate of {len(crate.runs)} run(s) written to {crate.folder}", "bold"))
    echo(f"runs: {', '.join(crate.runs)}")
    echo(f"files: {crate.files} named{copied}")
    for warning in crate.warnings:
        echo(style(f"warning: {warning}", "yellow", err=True), err=True)
    return 0
