"""What an EMDB deposition needs from one run, found where the run's plugin keeps it.

A reader per protocol (:mod:`.emtools_maps`, :mod:`.relion_maps`) turns a finished run into
:class:`MapSources`: the primary map, the two unfiltered half maps, the mask the FSC used
(a file, a mask the export can make again, or none when the FSC was unmasked), the FSC
curve and the resolution the run reported. :class:`RunView` is what a reader reads through:
the run, its outputs, and the runs its pointer params name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.em.errors import EmFormatError
from orchestrator.em.mrc import MrcInfo, read_header
from orchestrator.export.errors import ExportError
from orchestrator.export.fsc_xml import FscCurve
from orchestrator.export.mask import SphericalMask
from orchestrator.project import Project
from orchestrator.store import OutputRecord, ProjectStore, RunRecord


@dataclass(frozen=True)
class MapSources:
    """The files and facts of one map's deposition, as a reader found them."""

    run: str
    protocol: str
    primary_map: Path
    half_maps: tuple[Path, Path]
    mask: Path | SphericalMask | None  # None: the run's FSC was computed without a mask
    fsc: FscCurve
    fsc_file: Path
    fsc_description: str
    reported_resolution_a: float | None
    pixel_size_a: float
    box: int
    symmetry: str | None = None
    notes: tuple[str, ...] = field(default=())


class RunView:
    """A finished run as a reader sees it: its folder, outputs and the outputs it read."""

    def __init__(self, store: ProjectStore, project: Project, run: RunRecord) -> None:
        self.store = store
        self.project = project
        self.run = run
        self.run_dir = project.run_dir(run.name)
        self._outputs = {output.name: output for output in store.outputs.list(run.id)}

    def output(self, name: str) -> OutputRecord:
        """The run's output ``name``; ExportError naming the run and the outputs it has otherwise."""
        if name not in self._outputs:
            raise ExportError(f"run {self.run.name} ({self.run.protocol}) has no output {name!r}; "
                              f"it has: {', '.join(self._outputs) or 'none'}")
        return self._outputs[name]

    def value(self, name: str) -> dict[str, Any]:
        """The JSON value of output ``name`` (an empty dict when it has none)."""
        value = self.output(name).value
        return value if isinstance(value, dict) else {}

    def file(self, relative: str | None, what: str) -> Path:
        """A file of this run named relative to its folder; ExportError naming run and file when it is missing."""
        if not relative:
            raise ExportError(f"run {self.run.name}: its outputs name no {what}")
        path = self.run_dir / relative
        if not path.is_file():
            raise ExportError(f"run {self.run.name}: the {what} {path} is missing (moved or deleted since the run)")
        return path

    def producer(self, param: str) -> tuple[RunView, OutputRecord]:
        """The run and output that the pointer param ``param`` names."""
        for link in self.store.runs.inputs(self.run.id):
            if link.param == param:
                producer = RunView(self.store, self.project, self.store.runs.get(link.producer_run_id))
                return producer, producer.output(link.output_name)
        raise ExportError(f"run {self.run.name}: its param {param!r} names no run's output")


def half_map_files(view: RunView, value: dict[str, Any], source: str) -> tuple[Path, Path]:
    """The two half maps a Volume value names (relative to its run's folder)."""
    halves = value.get("half_maps") or []
    if len(halves) != 2:
        raise ExportError(f"run {view.run.name}: {source} names {len(halves)} half maps, not 2; "
                          "EMDB asks for the two unfiltered half maps of the refinement")
    return view.file(halves[0], "half map 1"), view.file(halves[1], "half map 2")


def map_header(run: str, path: Path, what: str) -> MrcInfo:
    """The header of a map the bundle takes; ExportError naming run and file when it is not a cubic map."""
    try:
        info = read_header(path)
    except EmFormatError as exc:
        raise ExportError(f"run {run}: the {what} is not a readable MRC map: {exc}") from None
    if len(set(info.shape)) != 1:
        raise ExportError(f"run {run}: the {what} {path} is {info.describe()}, not a cubic map")
    return info


def spherical_mask(diameter_a: Any, box: int, pixel_size_a: float) -> SphericalMask:
    """The mask emtools' FSC applies: ``diameter_a`` Å across when set, else 84 % of the box; 4 px soft edge."""
    diameter = float(diameter_a) if isinstance(diameter_a, int | float) and not isinstance(diameter_a, bool) else 0.0
    radius = 0.5 * diameter / pixel_size_a if diameter > 0 else 0.42 * box
    return SphericalMask(radius_px=radius, edge_px=4.0)


def finite_or_none(value: Any) -> float | None:
    """A reported number, or None when the run reported none (or a non-number)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
