"""EMDB sources of the RELION plugin's map runs: ``relion.reconstruct``, ``relion.autorefine``
and ``relion.postprocess``.

* reconstruct: ``Reconstruct/full.mrc`` and the half maps; the FSC of the half maps as
  ``relion_image_handler --fsc`` writes it (``fsc.star``, unmasked: no mask to deposit);
* autorefine: the map and the ``*_half?_class001_unfil.mrc`` half maps; the gold-standard
  FSC of the final ``*_model.star`` (``rlnGoldStandardFsc``, unmasked: no solvent mask);
* postprocess: the sharpened map, the half maps of the refinement it read, the mask it
  made (``PostProcess/mask.mrc``) and RELION's masked, phase-randomisation-corrected FSC
  (``rlnFourierShellCorrelationCorrected`` of ``postprocess.star``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.em.errors import EmFormatError
from orchestrator.em.star import read_star
from orchestrator.export.errors import ExportError
from orchestrator.export.fsc_xml import FscCurve
from orchestrator.export.map_sources import MapSources, RunView, finite_or_none, half_map_files, map_header

_UNMASKED = ("The run's FSC was computed without a mask, so the bundle has no mask; to deposit a masked "
             "FSC, run relion.postprocess on this volume and export that run.")


def star_curve(view: RunView, path: Path, block: str, column: str) -> FscCurve:
    """The FSC ``column`` against ``rlnResolution`` (1/Å) of the loop ``block`` of a STAR file."""
    try:
        table = read_star(path).loop(block)
    except EmFormatError as exc:
        raise ExportError(f"run {view.run.name}: cannot read the FSC of {path}: {exc}") from None
    missing = [name for name in ("rlnResolution", column) if name not in table]
    if missing:
        raise ExportError(f"run {view.run.name}: {path} (data_{block}) has no column {', '.join(missing)}")
    return FscCurve.of(table["rlnResolution"].tolist(), table[column].tolist(), f"{path} (data_{block})")


def _sources(view: RunView, value: dict[str, Any], primary: Path, halves: tuple[Path, Path],
             mask: Path | None, curve: FscCurve, fsc_file: Path, description: str,
             notes: tuple[str, ...]) -> MapSources:
    info = map_header(view.run.name, primary, "map")
    pixel = info.voxel_size[0] or float(value.get("pixel_size_a") or 0)
    return MapSources(run=view.run.name, protocol=view.run.protocol, primary_map=primary, half_maps=halves,
                      mask=mask, fsc=curve, fsc_file=fsc_file, fsc_description=description,
                      reported_resolution_a=finite_or_none(value.get("resolution_a")), pixel_size_a=pixel,
                      box=info.shape[0], symmetry=value.get("symmetry"), notes=notes)


def reconstruct_run(view: RunView) -> MapSources:
    """``relion.reconstruct``: full map, half maps, ``relion_image_handler --fsc`` of the halves."""
    value = view.value("volume")
    fsc_file = view.file(value.get("fsc"), "FSC file")
    return _sources(view, value, view.file(view.output("volume").path, "map"),
                    half_map_files(view, value, "its volume output"), None,
                    star_curve(view, fsc_file, "fsc", "rlnFourierShellCorrelation"), fsc_file,
                    "FSC of the two half maps (relion_image_handler --fsc), unmasked", (_UNMASKED,))


def autorefine_run(view: RunView) -> MapSources:
    """``relion.autorefine``: the refined map and its unfiltered half maps, the final model's FSC."""
    value = view.value("volume")
    model = view.file(value.get("model_star"), "model STAR file")
    return _sources(view, value, view.file(view.output("volume").path, "map"),
                    half_map_files(view, value, "its volume output"), None,
                    star_curve(view, model, "model_class_1", "rlnGoldStandardFsc"), model,
                    "RELION's gold-standard FSC of the two half maps (rlnGoldStandardFsc), unmasked", (_UNMASKED,))


def postprocess_run(view: RunView) -> MapSources:
    """``relion.postprocess``: the sharpened map, the half maps it read, its mask and masked FSC."""
    value = view.value("volume")
    producer, volume = view.producer("volume")
    producer_value = volume.value if isinstance(volume.value, dict) else {}
    fsc_file = view.file(value.get("fsc"), "FSC file")
    return _sources(view, value, view.file(view.output("volume").path, "map"),
                    half_map_files(producer, producer_value, f"the volume output of run {producer.run.name}"),
                    view.file(value.get("mask"), "mask"),
                    star_curve(view, fsc_file, "fsc", "rlnFourierShellCorrelationCorrected"), fsc_file,
                    "RELION's FSC of the masked half maps, corrected for the mask by phase randomisation "
                    "(rlnFourierShellCorrelationCorrected)", ())


READERS = {"relion.reconstruct": reconstruct_run, "relion.autorefine": autorefine_run,
           "relion.postprocess": postprocess_run}
