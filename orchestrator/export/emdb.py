"""An EMDB deposition bundle of one map: ``orch export PROJECT --run RUN --emdb DIR``.

What EMDB's deposition asks for about a map, gathered from a finished run into a new folder:

* ``map.mrc``: the primary map, and ``half_map_1.mrc``, ``half_map_2.mrc``: the two
  unfiltered, unmasked half maps the FSC was computed from (copied byte for byte);
* ``mask.mrc``: the mask the FSC used: the run's file, or made again when the run applied a
  mask it did not save (emtools); none when the FSC was unmasked (the README says so);
* ``fsc.xml``: the run's FSC curve in EMDB's XML (:mod:`.fsc_xml`), checked on the way out:
  its 0.143 crossing is compared with the resolution the run reported;
* ``map_image.png``: a 500 × 500 px image of the map (:mod:`.map_image`);
* ``processing.json`` and ``README.txt``: the run and every run before it back to the raw
  data, with their protocols, params and software, the files' SHA-256 and a contour level.

The copies are checked against the SHA-256 the runs' provenance records hold: a file that
changed since its run finished is reported (the bundle is written, with the warning in it).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator import __version__
from orchestrator.em import mrc
from orchestrator.em.errors import EmFormatError
from orchestrator.export.destination import CopiedFile, Destination, ProgressCallback
from orchestrator.export.emtools_maps import READERS as EMTOOLS_READERS
from orchestrator.export.errors import ExportError
from orchestrator.export.fsc_xml import crossing_shells, read_xml, resolution_at, to_xml
from orchestrator.export.map_image import lowpass, matching_level, surface_level, write_map_image
from orchestrator.export.map_sources import MapSources, RunView, map_header
from orchestrator.export.mask import SphericalMask
from orchestrator.export.processing import portable, processing_steps, recorded_fingerprints, steps_text
from orchestrator.export.relion_maps import READERS as RELION_READERS
from orchestrator.project import Project
from orchestrator.store import ProjectStore, RunRecord

#: protocol -> reader of its EMDB sources
READERS = {**EMTOOLS_READERS, **RELION_READERS}
BUNDLE_FORMAT = {"name": "em-orchestrator/emdb-bundle", "version": 1}
MAP, HALF_MAPS, MASK = "map.mrc", ("half_map_1.mrc", "half_map_2.mrc"), "mask.mrc"
FSC_XML, IMAGE, PROCESSING, README = "fsc.xml", "map_image.png", "processing.json", "README.txt"
_IMAGE_BOX = 200  # larger maps are binned for the image


@dataclass
class EmdbBundle:
    """What was written, and what a depositor needs to type into the deposition form."""

    folder: Path
    run: str
    protocol: str
    pixel_size_a: float
    box: int
    resolution_a: float  # where the exported FSC curve crosses 0.143
    reported_resolution_a: float | None  # what the run reported
    contour_level: float
    files: list[CopiedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "run": self.run, "protocol": self.protocol,
                "pixel_size_a": self.pixel_size_a, "box": self.box, "resolution_a": round(self.resolution_a, 3),
                "reported_resolution_a": self.reported_resolution_a, "contour_level": self.contour_level,
                "files": [vars(f) for f in self.files], "notes": self.notes, "warnings": self.warnings}


def find_sources(store: ProjectStore, project: Project, run: RunRecord) -> MapSources:
    """The EMDB sources of ``run``; ExportError when its protocol or its state gives none."""
    if run.state != "finished":
        raise ExportError(f"run {run.name} is {run.state}: an EMDB bundle is made from a finished run")
    reader = READERS.get(run.protocol)
    if reader is None:
        raise ExportError(f"run {run.name} ({run.protocol}) makes no map with half maps; "
                          f"an EMDB bundle is made from a run of {', '.join(sorted(READERS))}")
    sources = reader(RunView(store, project, run))
    if not sources.pixel_size_a > 0:
        raise ExportError(f"run {run.name}: the map {sources.primary_map} gives no voxel size, nor does the run")
    for number, half in enumerate(sources.half_maps, 1):
        info = map_header(run.name, half, f"half map {number}")
        if info.shape[0] != sources.box:
            raise ExportError(f"run {run.name}: half map {number} {half} is {info.describe()}, "
                              f"the map {sources.primary_map} is {sources.box}³")
        pixel = info.voxel_size[0]
        if pixel and sources.pixel_size_a and abs(pixel - sources.pixel_size_a) > 0.01 * sources.pixel_size_a:
            raise ExportError(f"run {run.name}: half map {number} {half} has {pixel:.4f} Å voxels, the map "
                              f"{sources.primary_map} {sources.pixel_size_a:.4f} Å: EMDB needs them equal")
    return sources


def write_emdb_bundle(store: ProjectStore, project: Project, run_ref: int | str, folder: str | Path,
                      progress: ProgressCallback | None = None) -> EmdbBundle:
    """Write the EMDB bundle of run ``run_ref`` into ``folder`` (new or empty); on failure what
    was written is removed again and the error names the run or file at fault."""
    run = store.runs.get(run_ref)
    sources = find_sources(store, project, run)
    destination = Destination.prepare(folder)
    try:
        return _write(store, project, run, sources, destination, progress)
    except BaseException:
        destination.discard()
        raise


def _write(store: ProjectStore, project: Project, run: RunRecord, sources: MapSources, destination: Destination,
           progress: ProgressCallback | None) -> EmdbBundle:
    steps = processing_steps(store, project, run.id)
    lineage_ids = [store.runs.get(step["run"]).id for step in steps]
    known = recorded_fingerprints(store, lineage_ids)
    bundle = EmdbBundle(destination.root, run.name, run.protocol, sources.pixel_size_a, sources.box,
                        resolution_a=math.nan, reported_resolution_a=sources.reported_resolution_a,
                        contour_level=math.nan, notes=list(sources.notes))
    origins: dict[str, str] = {}
    copies = [(sources.primary_map, MAP), *zip(sources.half_maps, HALF_MAPS, strict=True)]
    if isinstance(sources.mask, Path):
        copies.append((sources.mask, MASK))
    for source, name in copies:
        copied = destination.copy(source, name, progress)
        bundle.files.append(copied)
        origins[name] = portable(str(source), project.path)
        _check_fingerprint(bundle, known, origins[name], copied)
    if isinstance(sources.mask, SphericalMask):
        path = destination.new_path(MASK)
        mrc.write_volume(path, sources.mask.render(sources.box), sources.pixel_size_a)
        bundle.files.append(_written(path, MASK))
    bundle.files.append(_write_fsc(bundle, sources, destination))
    bundle.files.append(_write_image(bundle, sources, destination))
    document = _processing(bundle, sources, origins, steps, project.path)
    bundle.files.append(destination.write_text(PROCESSING, json.dumps(document, indent=2) + "\n"))
    bundle.files.append(destination.write_text(README, readme_text(document, project.name)))
    return bundle


def _written(path: Path, name: str) -> CopiedFile:
    data = path.read_bytes()
    return CopiedFile(name, len(data), hashlib.sha256(data).hexdigest())


def _check_fingerprint(bundle: EmdbBundle, known: dict[str, tuple[str, str]], origin: str, copied: CopiedFile) -> None:
    entry = known.get(origin)
    if entry is None:
        bundle.warnings.append(f"{origin}: no provenance record fingerprints this file; its copy {copied.name} "
                               f"has sha256 {copied.sha256}")
    elif entry[1] != copied.sha256:
        bundle.warnings.append(f"{origin} changed since run {entry[0]} finished: its record has sha256 {entry[1]}, "
                               f"the file copied to {copied.name} has {copied.sha256}")


def _write_fsc(bundle: EmdbBundle, sources: MapSources, destination: Destination) -> CopiedFile:
    title = f"{sources.run} ({sources.protocol}): {sources.fsc_description}"
    written = destination.write_text(FSC_XML, to_xml(sources.fsc, title))
    _title, curve = read_xml(destination.root / FSC_XML)  # what a reader of the file will see
    bundle.resolution_a = resolution_at(curve, 0.143)
    reported = sources.reported_resolution_a
    if reported is None or abs(bundle.resolution_a - reported) <= 0.01 * reported:
        return written
    shells = crossing_shells(curve, 0.143)
    if shells is not None and shells[1] * 0.995 <= reported <= shells[0] * 1.005:
        bundle.notes.append(f"{FSC_XML} crosses 0.143 at {bundle.resolution_a:.2f} Å (interpolated between the "
                            f"shells at {shells[0]:.2f} and {shells[1]:.2f} Å); the run reported {reported:.2f} Å, "
                            "a shell next to the crossing, as its program takes it without interpolating")
    else:
        bundle.warnings.append(f"the FSC curve in {FSC_XML} crosses 0.143 at {bundle.resolution_a:.2f} Å, but the "
                               f"run reported {reported:.2f} Å: check that the curve is the one behind that number")
    return written


def _binned(volume: np.ndarray, pixel: float) -> tuple[np.ndarray, float]:
    factor = math.ceil(volume.shape[0] / _IMAGE_BOX)
    if factor <= 1:
        return volume, pixel
    box = volume.shape[0] // factor * factor
    cut = volume[:box, :box, :box]
    n = box // factor
    return cut.reshape(n, factor, n, factor, n, factor).mean(axis=(1, 3, 5)), pixel * factor


def _write_image(bundle: EmdbBundle, sources: MapSources, destination: Destination) -> CopiedFile:
    try:
        full = mrc.read_volume(sources.primary_map).astype(np.float32)
    except EmFormatError as exc:
        raise ExportError(f"run {sources.run}: cannot read the map for its image: {exc}") from None
    volume, pixel = _binned(full, sources.pixel_size_a)
    cutoff = max(bundle.resolution_a, 2.0 * pixel)
    smooth = lowpass(volume, pixel, cutoff)
    level = surface_level(smooth)
    inside = int((smooth >= level).sum()) * (full.size // volume.size)
    bundle.contour_level = round(matching_level(full, inside), 6)
    title = f"{sources.run}: {bundle.resolution_a:.2f} Å, {sources.box}³ px at {sources.pixel_size_a:.3f} Å/px"
    path = destination.new_path(IMAGE)
    write_map_image(volume, smooth, level, title, path, surface_label=f"surface ({cutoff:.1f} Å low-pass)")
    return _written(path, IMAGE)


def _processing(bundle: EmdbBundle, sources: MapSources, origins: dict[str, str],
                steps: list[dict[str, Any]], project_dir: Path) -> dict[str, Any]:
    mask: dict[str, Any]
    if isinstance(sources.mask, SphericalMask):
        mask = {"file": MASK, "made_by_export": True, "description": sources.mask.describe(sources.pixel_size_a),
                "radius_px": round(sources.mask.radius_px, 3), "edge_px": sources.mask.edge_px}
    elif isinstance(sources.mask, Path):
        mask = {"file": MASK, "made_by_export": False, "source": origins[MASK]}
    else:
        mask = {"file": None, "description": "the FSC was computed without a mask"}
    files = {f.name: {"size": f.size, "sha256": f.sha256} for f in bundle.files}
    return {
        "format": BUNDLE_FORMAT,
        "written_by": f"em-orchestrator {__version__}",
        "written_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "run": {"name": sources.run, "protocol": sources.protocol, "params": steps[-1]["params"]},
        "map": {"file": MAP, "source": origins[MAP], "box": sources.box, "pixel_size_a": sources.pixel_size_a,
                "symmetry": sources.symmetry, "suggested_contour_level": bundle.contour_level},
        "half_maps": [{"file": name, "source": origins[name]} for name in HALF_MAPS],
        "mask": mask,
        "fsc": {"file": FSC_XML, "source": portable(str(sources.fsc_file), project_dir),
                "description": sources.fsc_description, "threshold": 0.143,
                "resolution_a": round(bundle.resolution_a, 3), "reported_resolution_a": sources.reported_resolution_a},
        "image": {"file": IMAGE, "size_px": [500, 500]},
        "files": files,
        "notes": bundle.notes,
        "warnings": bundle.warnings,
        "processing": steps,
    }


def readme_text(document: dict[str, Any], project_name: str) -> str:
    """The bundle's README: what each file is, the numbers the deposition form asks for, and how
    the map was made."""
    run, the_map, fsc, mask = document["run"], document["map"], document["fsc"], document["mask"]
    if mask.get("made_by_export"):
        mask_line = f"{MASK}          the mask the FSC used, made by this export: {mask['description']}"
    elif mask.get("file"):
        mask_line = f"{MASK}          the mask the FSC used, from {mask['source']}"
    else:
        mask_line = "(no mask)         the run's FSC was computed without a mask"
    reported = fsc["reported_resolution_a"]
    lines = [
        f"EMDB deposition bundle: run {run['name']} ({run['protocol']}) of project {project_name}",
        f"Written by {document['written_by']} at {document['written_at']}.",
        "",
        "Files",
        f"  {MAP}           primary map, from {the_map['source']}",
        f"  {HALF_MAPS[0]}    half map 1 (unfiltered, unmasked), from {document['half_maps'][0]['source']}",
        f"  {HALF_MAPS[1]}    half map 2 (unfiltered, unmasked), from {document['half_maps'][1]['source']}",
        f"  {mask_line}",
        f"  {FSC_XML}           FSC curve in EMDB's XML format: {fsc['description']}",
        f"  {IMAGE}     image of the map (500 x 500 px): surface of the map low-passed to the resolution, "
        "central slices, projections",
        f"  {PROCESSING}   all of this as data, with every file's SHA-256",
        f"  {README}        this file",
        "",
        "For the deposition form",
        f"  voxel size            {the_map['pixel_size_a']:.4f} Å (box {the_map['box']}³)",
        f"  resolution            {fsc['resolution_a']:.2f} Å at FSC 0.143 (where {FSC_XML} crosses it)"
        + (f"; the run reported {reported:.2f} Å" if reported is not None else ""),
        f"  symmetry              {the_map['symmetry'] or 'not recorded (C1 unless the processing says otherwise)'}",
        f"  contour level         {the_map['suggested_contour_level']:.4g} (a suggestion: it encloses as much of "
        f"{MAP} as the surface in {IMAGE} shows; check it in ChimeraX)",
        "",
    ]
    if document["notes"] or document["warnings"]:
        lines.append("Notes")
        lines += [f"  - {text}" for text in document["notes"]]
        lines += [f"  - WARNING: {text}" for text in document["warnings"]]
        lines.append("")
    lines.append("Processing, from the raw data to this map (each run with its params)")
    lines += steps_text(document["processing"])
    return "\n".join(lines) + "\n"
