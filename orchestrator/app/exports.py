"""Exports for other tools and archives: an EMDB deposition bundle of one map, a Workflow Run
RO-Crate of a project's runs.

Both write into a folder that is new or empty and never replace a file (see
:mod:`orchestrator.export`); a failed export removes what it wrote. Large copies report their
progress through ``progress(name, bytes_done, bytes_total)``. The export modules (matplotlib,
rocrate) are imported only when a function here runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.app.serialize import Record
from orchestrator.export.destination import ProgressCallback
from orchestrator.plugins import PluginRegistry, discover


@dataclass(frozen=True)
class ExportedFile(Record):
    """A file an export wrote: its name in the export folder, size and SHA-256."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class EmdbExport(Record):
    """An EMDB bundle: where, from which run, and the numbers the deposition form asks for."""

    folder: Path
    run: str
    protocol: str
    pixel_size_a: float
    box: int
    resolution_a: float  # where the bundle's FSC curve crosses 0.143
    reported_resolution_a: float | None  # what the run reported
    contour_level: float  # a suggestion for the primary map
    files: list[ExportedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CrateExport(Record):
    """A Workflow Run RO-Crate: where, which runs, how many files it names and how many it copied."""

    folder: Path
    runs: list[str]
    files: int
    copied_files: int
    copied_bytes: int
    warnings: list[str] = field(default_factory=list)


def export_emdb(target: ProjectTarget, run_ref: int | str, folder: str | PathLike[str],
                progress: ProgressCallback | None = None) -> EmdbExport:
    """Write the EMDB deposition bundle of run ``run_ref`` (a map run with half maps) into ``folder``."""
    from orchestrator.export.emdb import write_emdb_bundle

    with project_store(target) as (project, store):
        bundle = write_emdb_bundle(store, project, run_ref, Path(folder), progress)
    return EmdbExport(bundle.folder, bundle.run, bundle.protocol, bundle.pixel_size_a, bundle.box,
                      bundle.resolution_a, bundle.reported_resolution_a, bundle.contour_level,
                      [ExportedFile(f.name, f.size, f.sha256) for f in bundle.files], list(bundle.notes),
                      list(bundle.warnings))


def export_crate(target: ProjectTarget, folder: str | PathLike[str], runs: Sequence[int | str] | None = None,
                 with_data: bool = False, license: str | None = None, registry: PluginRegistry | None = None,
                 progress: ProgressCallback | None = None) -> CrateExport:
    """Write a Workflow Run RO-Crate of ``runs`` (default: every finished run) into ``folder``;
    ``with_data`` copies the files in, otherwise they are named with their SHA-256 only."""
    from orchestrator.export.crate import write_run_crate

    with project_store(target) as (project, store):
        summary = write_run_crate(store, project, registry or discover(), Path(folder), runs, with_data, license,
                                  progress)
    return CrateExport(summary.folder, summary.runs, summary.files, summary.copied_files, summary.copied_bytes,
                       list(summary.warnings))
