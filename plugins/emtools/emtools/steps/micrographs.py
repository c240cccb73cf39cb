"""Steps of ``emtools.motioncorr`` and ``emtools.ctffind``: one step per batch, one to register.

Motion correction writes the dose-weighted sum of each movie (``micrographs/NAME.mrc``)
and its per-frame shifts; CTF estimation adds defocus U/V, angle, fit resolution and fit
quality to each micrograph. Both keep the item ids of their input set, so a micrograph
has the id of its movie all along the pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emtools.kernels import ctffind, motion
from emtools.steps.common import (
    EmtoolsStepError,
    batch_file,
    finite_or_none,
    gather_batches,
    optics_of,
    project_path,
    resolve,
    set_acquisition,
    write_json,
)
from orchestrator.em import mrc
from orchestrator.protocol import StepContext, output_result


def motioncorr_batch_step(ctx: StepContext, batch: int, movies_set: int, start: int, stop: int,
                          settings: dict[str, Any]) -> dict[str, Any]:
    """Align and dose-weight movies ``start .. stop-1`` (row order) of the movie set."""
    movies = ctx.open_set(movies_set)
    acq = set_acquisition(movies)
    rows = movies.to_numpy(["id", "path", "optics_group"])
    pixel = float(acq["pixel_size_a"])
    dose = acq.get("dose_per_frame") if settings["dose_weighting"] else None
    if settings["dose_weighting"] and not dose:
        raise EmtoolsStepError(f"movie set {movies_set} has no dose per frame: give it at import, "
                               "or run with dose_weighting=false")
    records = []
    for i in range(start, min(stop, len(rows["id"]))):
        source = resolve(ctx, str(rows["path"][i]))
        frames = np.asarray(mrc.read_stack(source), dtype=np.float32)
        fit = motion.motion_correct(frames, pixel, dose_per_frame=dose, voltage_kv=float(acq["voltage_kv"]),
                                    bfactor_a2=settings["bfactor_a2"], max_shift_px=settings["max_shift_px"],
                                    max_iterations=settings["max_iterations"])
        image = fit.dose_weighted_sum if fit.dose_weighted_sum is not None else fit.aligned_sum
        out = ctx.path(f"micrographs/{Path(source).stem}.mrc")
        out.parent.mkdir(parents=True, exist_ok=True)
        mrc.write_image(out, image, pixel)
        drift = float(np.linalg.norm(np.diff(fit.shifts, axis=0), axis=1).sum())
        records.append({"id": int(rows["id"][i]), "path": project_path(ctx, out),
                        "optics_group": int(rows["optics_group"][i]), "shifts": fit.shifts.tolist(),
                        "drift_px": drift, "converged": bool(fit.converged)})
        ctx.log(f"{source.name}: drift {drift:.1f} px over {frames.shape[0]} frames, "
                f"{fit.iterations} iteration(s){'' if fit.converged else ', not converged'}")
    write_json(ctx.path(batch_file("motioncorr", batch)), records)
    return {"micrographs": len(records)}


def motioncorr_register_step(ctx: StepContext, files: list[str], movies_set: int) -> dict[str, Any]:
    """Gather the batches into a SetOfMicrographs (shifts kept in ``shifts.json``)."""
    records = [r for part in gather_batches(ctx, files) for r in part]
    columns = {"id": np.array([r["id"] for r in records], dtype=np.int64),
               "path": np.array([r["path"] for r in records], dtype=object),
               "movie_id": np.array([r["id"] for r in records], dtype=np.int64),
               "optics_group": np.array([r["optics_group"] for r in records], dtype=np.int16)}
    write_json(ctx.path("shifts.json"), {str(r["id"]): r["shifts"] for r in records})
    acq = set_acquisition(ctx.open_set(movies_set))
    set_id = ctx.register_set("micrographs", "Micrograph", columns,
                              {"acquisition": acq, "shifts": "shifts.json", "dose_weighted": True})
    drifts = [r["drift_px"] for r in records]
    value = {"set_id": set_id, "size": len(records), "mean_drift_px": float(np.mean(drifts)) if drifts else 0.0,
             "not_converged": sum(1 for r in records if not r["converged"])}
    return {"outputs": {"micrographs": output_result(None, value)}}


def ctffind_batch_step(ctx: StepContext, batch: int, micrographs_set: int, start: int, stop: int,
                       settings: dict[str, Any]) -> dict[str, Any]:
    """Fit the CTF of micrographs ``start .. stop-1`` (row order) of the set."""
    micrographs = ctx.open_set(micrographs_set)
    optics = optics_of(set_acquisition(micrographs))
    rows = micrographs.to_numpy(["id", "path"])
    records = []
    for i in range(start, min(stop, len(rows["id"]))):
        path = resolve(ctx, str(rows["path"][i]))
        image = mrc.read_image(path)
        tile = min(settings["tile_size"], min(image.shape) // 2 * 2)
        fit = ctffind.estimate_ctf(image, optics, tile_size=tile,
                                   min_resolution_a=settings["min_resolution_a"],
                                   max_resolution_a=settings["max_resolution_a"],
                                   defocus_range_a=(settings["defocus_min_a"], settings["defocus_max_a"]),
                                   max_astigmatism_a=settings["max_astigmatism_a"])
        records.append({"id": int(rows["id"][i]), "defocus_u": fit.defocus_u_a, "defocus_v": fit.defocus_v_a,
                        "defocus_angle": fit.defocus_angle_deg, "ctf_resolution": finite_or_none(fit.resolution_a),
                        "ctf_fit_quality": fit.cc})
        ctx.log(f"{path.name}: defocus {fit.defocus_u_a:.0f} / {fit.defocus_v_a:.0f} Å at "
                f"{fit.defocus_angle_deg:.1f}°, fit to {fit.resolution_a:.1f} Å, cc {fit.cc:.3f}")
    write_json(ctx.path(batch_file("ctffind", batch)), records)
    return {"micrographs": len(records)}


def ctffind_register_step(ctx: StepContext, files: list[str], micrographs_set: int) -> dict[str, Any]:
    """A new SetOfMicrographs: the input's rows with their CTF."""
    fits = {r["id"]: r for part in gather_batches(ctx, files) for r in part}
    source = ctx.open_set(micrographs_set)
    columns = source.to_numpy()
    ids = columns["id"]
    missing = [int(i) for i in ids if int(i) not in fits]
    if missing:
        raise EmtoolsStepError(f"no CTF fit for micrograph id(s) {missing[:10]}")
    for name in ("defocus_u", "defocus_v", "defocus_angle", "ctf_resolution", "ctf_fit_quality"):
        columns[name] = np.array([np.nan if fits[int(i)][name] is None else fits[int(i)][name] for i in ids],
                                 dtype=np.float32)
    columns["has_ctf"] = np.ones(len(ids), dtype=bool)
    set_id = ctx.register_set("micrographs", "Micrograph", columns, {**source.properties, "ctf": "emtools.ctffind"})
    mean_def = 0.5 * (columns["defocus_u"] + columns["defocus_v"])
    value = {"set_id": set_id, "size": len(ids),
             "mean_defocus_a": finite_or_none(mean_def.mean()) if len(ids) else None,
             "median_ctf_resolution_a": finite_or_none(np.nanmedian(columns["ctf_resolution"]))
             if len(ids) else None}
    return {"outputs": {"micrographs": output_result(None, value)}}
