"""Steps of ``emtools.refine3d``, ``emtools.reconstruct`` and ``emtools.fsc``: maps out of particles.

Maps are written as MRC files in the run folder (``maps/``), FSC curves as ``fsc.json``
(frequencies in 1/Å and correlations per shell). A Volume output's value names its half
maps (run-relative) and its resolution; an FSC output's value holds the resolutions at
0.143 (half maps) and, against a reference, at 0.5 and 0.143.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emtools.kernels import xp as xpmod
from emtools.kernels.filters import soft_spherical_mask
from emtools.kernels.fsc import FscCurve, fsc
from emtools.kernels.geometry import euler_to_matrix
from emtools.kernels.reconstruction import FourierAccumulator, prepare_particles
from emtools.kernels.refinement import IterationRecord, RefinementSettings, refine_3d
from emtools.steps.common import (
    EmtoolsStepError,
    finite_or_none,
    write_json,
)
from emtools.steps.particle_io import gpu_module, load_particles, particle_columns_for_set
from orchestrator.em import mrc
from orchestrator.protocol import StepContext, output_result

MAP = "maps/map.mrc"
HALVES = ("maps/half1.mrc", "maps/half2.mrc")
FSC_FILE = "fsc.json"


def _curve_json(curve: FscCurve) -> dict[str, Any]:
    return {"frequency": curve.frequencies.tolist(), "fsc": np.nan_to_num(curve.fsc).tolist()}


def _read_model(path: str, box: int, pixel_size_a: float) -> np.ndarray:
    info = mrc.read_header(path)
    volume = mrc.read_volume(path)
    if volume.shape != (box, box, box):
        raise EmtoolsStepError(f"{path}: the map is {info.describe()} but the particles are {box} px boxes")
    if info.voxel_size[0] and abs(info.voxel_size[0] - pixel_size_a) > 0.01 * pixel_size_a:
        raise EmtoolsStepError(f"{path}: the map has {info.voxel_size[0]:.3f} Å/px, the particles "
                               f"{pixel_size_a:.3f} Å/px")
    return volume.astype(np.float32)


def _write_maps(ctx: StepContext, full: np.ndarray, halves: tuple[np.ndarray, np.ndarray], pixel: float) -> None:
    ctx.path("maps").mkdir(parents=True, exist_ok=True)
    mrc.write_volume(ctx.path(MAP), full, pixel)
    for name, half in zip(HALVES, halves, strict=True):
        mrc.write_volume(ctx.path(name), half, pixel)


def refine3d_step(ctx: StepContext, particles_set: int, initial_model: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Gold-standard projection-matching refinement (``refinement.refine_3d``)."""
    xp = gpu_module(ctx, settings["use_gpu"])
    source = ctx.open_set(particles_set)
    images, columns, optics = load_particles(ctx, source)
    n, pixel = images.shape[-1], optics.pixel_size_a
    model = _read_model(initial_model, n, pixel)
    refine = RefinementSettings(
        initial_lowpass_a=settings["initial_lowpass_a"], global_step_deg=settings["global_step_deg"],
        global_iterations=settings["global_iterations"], min_step_deg=settings["min_step_deg"],
        max_shift_px=settings["max_shift_a"] / pixel, max_iterations=settings["max_iterations"],
        mask_radius_px=0.5 * settings["mask_diameter_a"] / pixel if settings["mask_diameter_a"] else None,
        seed=settings["seed"])
    has_ctf = bool(np.any(columns["defocus_u"] > 0))

    def log(record: IterationRecord) -> None:
        moved = record.mean_angle_change_deg
        change = f", angles moved {moved:.2f}° on average" if np.isfinite(moved) else ""
        ctx.log(f"iteration {record.iteration + 1} ({record.search}, {record.angular_step_deg:g}°): "
                f"{record.resolution_a:.2f} Å{change}, {record.seconds:.1f} s")

    result = refine_3d(images, optics if has_ctf else None, columns["defocus_u"], columns["defocus_v"],
                       columns["defocus_angle"], model, pixel, refine, xp=xp, log=log)
    _write_maps(ctx, result.volume, result.half_maps, pixel)
    write_json(ctx.path(FSC_FILE), {"half_maps": _curve_json(result.fsc)})
    updates = {**{name: result.poses[name] for name in ("rot", "tilt", "psi", "shift_x", "shift_y")},
               "subset": result.half + 1}
    particles = ctx.register_set("particles", "Particle", particle_columns_for_set(columns, updates),
                                 {**source.properties, "refined_map": MAP})
    resolution = finite_or_none(result.resolution_a)
    history = [{"iteration": r.iteration + 1, "search": r.search, "step_deg": r.angular_step_deg,
                "resolution_a": finite_or_none(r.resolution_a), "seconds": r.seconds} for r in result.history]
    volume_value = {"pixel_size_a": pixel, "box": n, "resolution_a": resolution, "half_maps": list(HALVES),
                    "iterations": len(result.history), "particles": int(len(images))}
    fsc_value = {"resolution_0143": resolution, "source": "half maps", "history": history}
    return {"resolution_a": resolution,
            "outputs": {"volume": output_result(MAP, volume_value),
                        "particles": output_result(None, {"set_id": particles, "size": int(len(images))}),
                        "fsc": output_result(FSC_FILE, fsc_value)}}


def _halves(columns: dict[str, np.ndarray], seed: int) -> np.ndarray:
    """0/1 half of each particle: its ``subset`` (1/2) when every particle has one, else a
    hash of its id and ``seed`` (splitmix64), so a particle's half does not depend on the
    batch it is inserted with."""
    subset = columns["subset"].astype(np.int64)
    if np.all(np.isin(subset, (1, 2))):
        return subset - 1
    with np.errstate(over="ignore"):
        z = columns["id"].astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(63)).astype(np.int64)


def reconstruct_batch_step(ctx: StepContext, batch: int, particles_set: int, start: int, stop: int,
                           settings: dict[str, Any]) -> dict[str, Any]:
    """Insert particles ``start .. stop-1`` into one Fourier accumulator per half set."""
    xp = gpu_module(ctx, settings["use_gpu"])
    images, columns, optics = load_particles(ctx, ctx.open_set(particles_set), start, stop)
    has_ctf = bool(np.any(columns["defocus_u"] > 0))
    origins = np.stack([columns["shift_x"], columns["shift_y"]], axis=1)
    ft, ctfs = prepare_particles(images, origins, optics if has_ctf else None, columns["defocus_u"],
                                 columns["defocus_v"], columns["defocus_angle"], xp=xp)
    rotations = euler_to_matrix(columns["rot"], columns["tilt"], columns["psi"])
    half = _halves(columns, settings["seed"])
    sums = []
    for h in (0, 1):
        sel = np.flatnonzero(half == h)
        acc = FourierAccumulator(images.shape[-1], xp=xp)
        if sel.size:
            idx = xp.asarray(sel)
            acc.insert(ft[idx], None if ctfs is None else ctfs[idx], rotations[sel])
        sums.append((xpmod.to_numpy(acc.data).astype(np.complex64), xpmod.to_numpy(acc.weight).astype(np.float32)))
    out = ctx.path(f"batches/reconstruct_{batch:04d}.npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, data0=sums[0][0], weight0=sums[0][1], data1=sums[1][0], weight1=sums[1][1])
    ctx.log(f"particles {start + 1}-{stop}: {int((half == 0).sum())} / {int((half == 1).sum())} per half")
    return {"particles": int(len(images))}


def reconstruct_combine_step(ctx: StepContext, files: list[str], box: int, pixel_size_a: float,
                             settings: dict[str, Any]) -> dict[str, Any]:
    """Sum the batches' accumulators, divide, write the map and half maps, FSC of the halves."""
    sums: dict[str, np.ndarray] = {}
    for name in files:
        with np.load(ctx.path(name)) as part:
            for key in part.files:
                sums[key] = sums[key] + part[key] if key in sums else part[key].astype(
                    np.complex128 if key.startswith("data") else np.float64)
    if not sums:
        raise EmtoolsStepError("no particles were inserted")
    maps = []
    for keys in (("data0", "weight0"), ("data1", "weight1"), None):
        acc = FourierAccumulator(box)
        acc.data = sums["data0"] + sums["data1"] if keys is None else sums[keys[0]]
        acc.weight = sums["weight0"] + sums["weight1"] if keys is None else sums[keys[1]]
        maps.append(acc.volume(settings["regularisation"]))
    _write_maps(ctx, maps[2], (maps[0], maps[1]), pixel_size_a)
    mask = soft_spherical_mask((box,) * 3, _mask_radius(settings, box, pixel_size_a), 4.0)
    curve = fsc(maps[0], maps[1], pixel_size_a, mask=mask)
    write_json(ctx.path(FSC_FILE), {"half_maps": _curve_json(curve)})
    resolution = finite_or_none(curve.resolution(0.143))
    volume_value = {"pixel_size_a": pixel_size_a, "box": box, "resolution_a": resolution, "half_maps": list(HALVES)}
    return {"resolution_a": resolution,
            "outputs": {"volume": output_result(MAP, volume_value),
                        "fsc": output_result(FSC_FILE, {"resolution_0143": resolution, "source": "half maps"})}}


def _mask_radius(settings: dict[str, Any], box: int, pixel_size_a: float) -> float:
    diameter = settings.get("mask_diameter_a")
    return 0.5 * diameter / pixel_size_a if diameter else 0.42 * box


def fsc_step(ctx: StepContext, volume: str, half_maps: list[str], reference: str | None,
             settings: dict[str, Any]) -> dict[str, Any]:
    """FSC of the half maps (0.143) and, given a reference, of the map against it (0.5 and 0.143)."""
    info = mrc.read_header(volume)
    box, pixel = info.shape[0], info.voxel_size[0] or settings["pixel_size_a"]
    if not pixel:
        raise EmtoolsStepError(f"{volume}: the header gives no pixel size; set pixel_size_a")
    mask = soft_spherical_mask((box,) * 3, _mask_radius(settings, box, pixel), 4.0)
    curves: dict[str, Any] = {}
    value: dict[str, Any] = {"box": box, "pixel_size_a": pixel}
    if half_maps:
        curve = fsc(mrc.read_volume(half_maps[0]), mrc.read_volume(half_maps[1]), pixel, mask=mask)
        curves["half_maps"] = _curve_json(curve)
        value["resolution_0143"] = finite_or_none(curve.resolution(0.143))
    if reference:
        ref = mrc.read_volume(reference)
        if ref.shape != (box, box, box):
            raise EmtoolsStepError(f"{reference}: {ref.shape} does not match {volume}: {info.shape}")
        curve = fsc(mrc.read_volume(volume), ref, pixel, mask=mask)
        curves["vs_reference"] = _curve_json(curve)
        value["vs_reference_05"] = finite_or_none(curve.resolution(0.5))
        value["vs_reference_0143"] = finite_or_none(curve.resolution(0.143))
    if not curves:
        raise EmtoolsStepError(f"{volume}: no half maps and no reference: nothing to correlate")
    write_json(ctx.path(FSC_FILE), curves)
    ctx.log(", ".join(f"{key} {val:.2f} Å" for key, val in value.items()
                      if key.startswith(("resolution", "vs_")) and val is not None))
    return {"outputs": {"fsc": output_result(FSC_FILE, value)}}


def volume_files(run_dir: Path, path: str | None, value: dict[str, Any] | None) -> tuple[str, list[str]]:
    """Absolute paths of a Volume output's map and half maps (empty when it has none)."""
    if not path:
        raise EmtoolsStepError("the volume output names no file")
    halves = [str(Path(run_dir) / h) for h in (value or {}).get("half_maps") or []]
    return str(Path(run_dir) / path), halves
