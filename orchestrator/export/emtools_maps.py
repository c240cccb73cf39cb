"""EMDB sources of emtools' map runs: ``emtools.refine3d``, ``emtools.reconstruct`` and ``emtools.fsc``.

These runs write ``maps/map.mrc`` with ``maps/half1.mrc`` and ``maps/half2.mrc`` (named in the
Volume output's ``half_maps``) and ``fsc.json`` (``{"half_maps": {"frequency": [1/Å], "fsc":
[...]}}``). Their half-map FSC is masked with a soft sphere they do not save; the bundle gets
that sphere made again (:func:`.map_sources.spherical_mask`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.export.errors import ExportError
from orchestrator.export.fsc_xml import FscCurve
from orchestrator.export.map_sources import (
    MapSources,
    RunView,
    finite_or_none,
    half_map_files,
    map_header,
    spherical_mask,
)

_MASK_NOTE = ("The run did not save the mask its FSC used; mask.mrc is that mask made again by the export "
              "(the soft sphere emtools applies to both half maps before correlating them).")


def half_map_curve(view: RunView, path: Path) -> FscCurve:
    """The half-map curve of an emtools ``fsc.json``."""
    try:
        curves: Any = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"run {view.run.name}: cannot read the FSC file {path}: {exc}") from None
    curve = curves.get("half_maps") if isinstance(curves, dict) else None
    if not isinstance(curve, dict):
        raise ExportError(f"run {view.run.name}: {path} holds no half-map FSC curve ('half_maps'); "
                          "EMDB's FSC is the one of the two half maps")
    return FscCurve.of(curve.get("frequency") or [], curve.get("fsc") or [], str(path))


def volume_run(view: RunView) -> MapSources:
    """``emtools.refine3d`` and ``emtools.reconstruct``: the run made the maps and their FSC."""
    volume = view.output("volume")
    value = view.value("volume")
    primary = view.file(volume.path, "map")
    info = map_header(view.run.name, primary, "map")
    pixel = info.voxel_size[0] or float(value.get("pixel_size_a") or 0)
    fsc_file = view.file(view.output("fsc").path, "FSC file")
    box = info.shape[0]
    return MapSources(
        run=view.run.name, protocol=view.run.protocol, primary_map=primary,
        half_maps=half_map_files(view, value, "its volume output"),
        mask=spherical_mask(view.run.params.get("mask_diameter"), box, pixel),
        fsc=half_map_curve(view, fsc_file), fsc_file=fsc_file,
        fsc_description="gold-standard FSC of the two half maps, both multiplied by the mask",
        reported_resolution_a=finite_or_none(value.get("resolution_a")),
        pixel_size_a=pixel, box=box, notes=(_MASK_NOTE,))


def fsc_run(view: RunView) -> MapSources:
    """``emtools.fsc``: the FSC is this run's, the maps are those of the volume it assessed."""
    producer, volume = view.producer("volume")
    value = volume.value if isinstance(volume.value, dict) else {}
    primary = producer.file(volume.path, "map")
    info = map_header(producer.run.name, primary, "map")
    pixel = info.voxel_size[0] or float(view.run.params.get("pixel_size") or 0)
    if not pixel:
        raise ExportError(f"run {view.run.name}: the map {primary} gives no pixel size and the run sets none")
    fsc_file = view.file(view.output("fsc").path, "FSC file")
    box = info.shape[0]
    return MapSources(
        run=view.run.name, protocol=view.run.protocol, primary_map=primary,
        half_maps=half_map_files(producer, value, f"the volume output of run {producer.run.name}"),
        mask=spherical_mask(view.run.params.get("mask_diameter"), box, pixel),
        fsc=half_map_curve(view, fsc_file), fsc_file=fsc_file,
        fsc_description=f"gold-standard FSC of the half maps of run {producer.run.name}, both multiplied by the mask",
        reported_resolution_a=finite_or_none(view.value("fsc").get("resolution_0143")),
        pixel_size_a=pixel, box=box, notes=(_MASK_NOTE,))


READERS = {"emtools.refine3d": volume_run, "emtools.reconstruct": volume_run, "emtools.fsc": fsc_run}
