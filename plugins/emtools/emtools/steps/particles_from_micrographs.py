"""Steps of ``emtools.pick`` and ``emtools.extract``: per batch of micrographs, then register.

Picking stores coordinates in pixels of the micrograph, with the micrograph's id, and
the id of the micrograph set it picked on (set property ``micrographs_set_id``), which is
where extraction finds the images and their CTF. Extraction writes one stack per
micrograph (``particles/NAME.mrcs``) and gives every particle its micrograph's CTF.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emtools.kernels import extraction, picking
from emtools.steps.common import (
    EmtoolsStepError,
    batch_file,
    gather_batches,
    optics_of,
    project_path,
    resolve,
    set_acquisition,
    write_json,
)
from orchestrator.em import mrc
from orchestrator.protocol import SetReader, StepContext, output_result

MICROGRAPH_COLUMNS = ["id", "path", "has_ctf", "defocus_u", "defocus_v", "defocus_angle", "ctf_resolution",
                      "ctf_fit_quality", "optics_group"]


def _micrographs(micrographs: SetReader, start: int, stop: int) -> dict[str, np.ndarray]:
    rows = micrographs.to_numpy(MICROGRAPH_COLUMNS)
    return {name: values[start:stop] for name, values in rows.items()}


def _templates(ctx: StepContext, classes_set: int, pixel_size_a: float) -> np.ndarray:
    classes = ctx.open_set(classes_set)
    rows = classes.to_numpy(["image_index", "image_path", "size", "enabled"])
    keep = rows["enabled"] & (rows["size"] > 0)
    acq = classes.properties.get("acquisition") or {}
    if acq and abs(float(acq["pixel_size_a"]) - pixel_size_a) > 0.01 * pixel_size_a:
        raise EmtoolsStepError(f"templates of set {classes.name!r} are at {acq['pixel_size_a']} Å/px but the "
                               f"micrographs at {pixel_size_a} Å/px; extract without binning to make them")
    images = [mrc.read_stack_images(resolve(ctx, str(path)), [int(index)])[0]
              for index, path in zip(rows["image_index"][keep], rows["image_path"][keep], strict=True)]
    if not images:
        raise EmtoolsStepError(f"set {classes.name!r} holds no enabled, non-empty class to use as a template")
    return np.stack(images).astype(np.float32)


def pick_batch_step(ctx: StepContext, batch: int, micrographs_set: int, start: int, stop: int,
                    settings: dict[str, Any]) -> dict[str, Any]:
    """Pick micrographs ``start .. stop-1`` (row order) with the blob or template picker."""
    micrographs = ctx.open_set(micrographs_set)
    acq = set_acquisition(micrographs)
    rows = _micrographs(micrographs, start, stop)
    pixel = float(acq["pixel_size_a"])
    templates = (_templates(ctx, settings["templates_set"], pixel)
                 if settings["method"] == "template" else None)
    radius_px = 0.5 * settings["particle_diameter_a"] / pixel
    min_distance_px = settings["min_distance_a"] / pixel if settings["min_distance_a"] else None
    result: dict[str, list[Any]] = {"x": [], "y": [], "micrograph_id": [], "score": []}
    for i in range(len(rows["id"])):
        image = mrc.read_image(resolve(ctx, str(rows["path"][i])))
        if templates is None:
            picks = picking.pick_blobs(image, radius_px, min_distance_px=min_distance_px,
                                       threshold_sigma=settings["threshold_sigma"],
                                       max_picks=settings["max_picks"] or None)
        else:
            ctf = None
            if rows["has_ctf"][i]:
                ctf = optics_of(acq).with_defocus(float(rows["defocus_u"][i]), float(rows["defocus_v"][i]),
                                                  float(rows["defocus_angle"][i]))
            picks = picking.pick_templates(image, templates, angle_step_deg=settings["angle_step_deg"],
                                           mask_radius_px=radius_px, min_distance_px=min_distance_px,
                                           threshold_sigma=settings["threshold_sigma"], ctf=ctf,
                                           max_picks=settings["max_picks"] or None)
        n = len(picks.scores)
        result["x"] += picks.coordinates[:, 0].tolist()
        result["y"] += picks.coordinates[:, 1].tolist()
        result["micrograph_id"] += [int(rows["id"][i])] * n
        result["score"] += np.asarray(picks.scores, dtype=float).tolist()
        ctx.log(f"{Path(str(rows['path'][i])).name}: {n} picks")
    write_json(ctx.path(batch_file("pick", batch)), result)
    return {"picks": len(result["x"])}


def pick_register_step(ctx: StepContext, files: list[str], micrographs_set: int, n_micrographs: int,
                       particle_diameter_a: float) -> dict[str, Any]:
    """Gather the batches into a SetOfCoordinates."""
    parts = gather_batches(ctx, files)
    columns = {name: np.concatenate([np.asarray(p[name]) for p in parts]) for name in ("x", "y", "micrograph_id",
                                                                                        "score")}
    acq = set_acquisition(ctx.open_set(micrographs_set))
    set_id = ctx.register_set("coordinates", "Coordinate", columns,
                              {"acquisition": acq, "micrographs_set_id": micrographs_set,
                               "particle_diameter_a": particle_diameter_a})
    size = len(columns["x"])
    value = {"set_id": set_id, "size": size, "micrographs_set_id": micrographs_set,
             "n_micrographs": n_micrographs, "per_micrograph": size / max(n_micrographs, 1)}
    return {"outputs": {"coordinates": output_result(None, value)}}


def extract_batch_step(ctx: StepContext, batch: int, coordinates_set: int, micrographs_set: int, start: int,
                       stop: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Extract the particles of micrographs ``start .. stop-1`` (row order), one stack each."""
    micrographs = ctx.open_set(micrographs_set)
    acq = set_acquisition(micrographs)
    mics = _micrographs(micrographs, start, stop)
    coords = ctx.open_set(coordinates_set).to_numpy(["x", "y", "micrograph_id"],
                                                    micrograph_id=[int(i) for i in mics["id"]])
    pixel = float(acq["pixel_size_a"])
    box, binning = settings["box_size"], settings["bin_factor"]
    out_box = box // binning
    radius = settings["background_radius_px"] or None
    columns: dict[str, list[Any]] = {name: [] for name in (
        "image_index", "image_path", "micrograph_id", "micrograph_name", "coord_x", "coord_y", "defocus_u",
        "defocus_v", "defocus_angle", "ctf_resolution", "ctf_fit_quality", "optics_group")}
    for i in range(len(mics["id"])):
        mic_id = int(mics["id"][i])
        mine = coords["micrograph_id"] == mic_id
        xy = np.stack([coords["x"][mine], coords["y"][mine]], axis=1).astype(np.float64)
        path = resolve(ctx, str(mics["path"][i]))
        ctf = None
        if mics["has_ctf"][i]:
            ctf = optics_of(acq).with_defocus(float(mics["defocus_u"][i]), float(mics["defocus_v"][i]),
                                              float(mics["defocus_angle"][i]))
        elif settings["phase_flip"]:
            raise EmtoolsStepError(f"{path.name}: phase flipping needs a CTF; run emtools.ctffind first")
        image = mrc.read_image(path)
        got = extraction.extract_particles(image, xy, box, bin_factor=binning, normalize=settings["normalize"],
                                           background_radius_px=radius, invert_contrast=settings["invert_contrast"],
                                           ctf=ctf if settings["phase_flip"] else None, pixel_size_a=pixel)
        n = got.images.shape[0]
        if n == 0:
            continue
        stack = ctx.path(f"particles/{path.stem}.mrcs")
        stack.parent.mkdir(parents=True, exist_ok=True)
        mrc.write_stack(stack, got.images, pixel * binning)
        kept = xy[got.kept]
        columns["image_index"] += list(range(1, n + 1))
        columns["image_path"] += [project_path(ctx, stack)] * n
        columns["micrograph_id"] += [mic_id] * n
        columns["micrograph_name"] += [str(mics["path"][i])] * n
        columns["coord_x"] += kept[:, 0].tolist()
        columns["coord_y"] += kept[:, 1].tolist()
        for name in ("defocus_u", "defocus_v", "defocus_angle", "ctf_resolution", "ctf_fit_quality"):
            value = float(mics[name][i]) if mics["has_ctf"][i] else 0.0
            columns[name] += [value if np.isfinite(value) else None] * n
        columns["optics_group"] += [int(mics["optics_group"][i])] * n
        ctx.log(f"{path.name}: {n} of {len(xy)} boxes of {box} px"
                + (f" binned to {out_box} px" if binning > 1 else ""))
    write_json(ctx.path(batch_file("extract", batch)), columns)
    return {"particles": len(columns["image_index"])}


def extract_register_step(ctx: StepContext, files: list[str], micrographs_set: int,
                          settings: dict[str, Any]) -> dict[str, Any]:
    """Gather the batches into a SetOfParticles."""
    parts = gather_batches(ctx, files)
    columns: dict[str, np.ndarray] = {}
    for name in parts[0] if parts else ():
        values = [v for p in parts for v in p[name]]
        if name in ("ctf_resolution", "ctf_fit_quality"):
            values = [np.nan if v is None else v for v in values]
        columns[name] = np.asarray(values, dtype=object if name in ("image_path", "micrograph_name") else None)
    acq = dict(set_acquisition(ctx.open_set(micrographs_set)))
    acq["pixel_size_a"] = float(acq["pixel_size_a"]) * settings["bin_factor"]
    acq["dose_per_frame"] = None
    box = settings["box_size"] // settings["bin_factor"]
    set_id = ctx.register_set("particles", "Particle", columns,
                              {"acquisition": acq, "box_size": box, "micrographs_set_id": micrographs_set,
                               "phase_flipped": settings["phase_flip"]})
    size = len(columns.get("image_index", ()))
    value = {"set_id": set_id, "size": size, "box_size": box, "pixel_size_a": acq["pixel_size_a"]}
    return {"outputs": {"particles": output_result(None, value)}}
