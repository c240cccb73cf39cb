"""Step functions of relion.reconstruct and relion.postprocess.

Reconstruction fans out: the full map and the two half maps are three independent
``relion_reconstruct`` steps; a last step measures their FSC with ``relion_image_handler
--fsc`` and announces the Volume. Postprocessing makes a soft mask with
``relion_mask_create`` (its threshold, when not given, from the low-passed map) and runs
``relion_postprocess`` on the half maps of a refinement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.em.mrc import read_header, read_volume
from orchestrator.protocol import StepContext, output_result
from relion_plugin.command import DEFAULT_MPIRUN, MPIRUN_PROGRAM, program_command, run_program
from relion_plugin.errors import RelionInputError, RelionOutputError
from relion_plugin.particle_sets import load_particles
from relion_plugin.results import check_map, fsc_resolution, postprocess_resolution, volume_value
from relion_plugin.star_exchange import export_particles

# ------------------------------------------------------------------------ reconstruct


def export_halves_step(ctx: StepContext, set_id: int, producer_dir: str, star: str, seed: int) -> dict[str, Any]:
    """Export the set; particles without a half set (subset 0) get a random one, seeded.

    The halves are only written to the STAR file for RELION: the particle set is not changed.
    """
    particles = load_particles(ctx, set_id, producer_dir)
    subset = particles.columns["subset"]
    assigned = not np.isin(subset, (1, 2)).all()
    if assigned:
        order = np.random.default_rng(seed).permutation(particles.count)
        halves = np.empty(particles.count, dtype=np.int8)
        halves[order] = (np.arange(particles.count) % 2 + 1).astype(np.int8)
        particles.columns["subset"] = halves
    export_particles(particles, ctx.path(star))
    return {
        "particles": particles.count,
        "box": particles.box,
        "pixel_size_a": particles.pixel_size,
        "halves_assigned": bool(assigned),
    }


def reconstruct_step(
    ctx: StepContext,
    star: str,
    out: str,
    subset: int,
    ctf: bool,
    symmetry: str,
    mpi: int,
    extra_args: str = "",
    maxres: float | None = None,
) -> dict[str, Any]:
    """One relion_reconstruct (``subset`` 1 or 2: a half map; 0: all particles)."""
    ctx.path(out).parent.mkdir(parents=True, exist_ok=True)
    args = ["--i", star, "--o", out, "--sym", symmetry]
    args += ["--ctf"] if ctf else []
    args += ["--subset", str(subset)] if subset in (1, 2) else []
    args += ["--maxres", f"{maxres:g}"] if maxres else []
    launcher = ctx.program(MPIRUN_PROGRAM, list(DEFAULT_MPIRUN))
    argv = program_command("relion_reconstruct", args, mpi_ranks=mpi, launcher=launcher, extra_args=extra_args)
    run_program(argv, cwd=ctx.run_dir, log_path=ctx.log_path)
    data = check_map(ctx.path(out))
    return {"map": out, "box": int(data.shape[0])}


def fsc_step(ctx: StepContext, full: str, half1: str, half2: str, symmetry: str) -> dict[str, Any]:
    """FSC of the half maps (relion_image_handler --fsc) and the Volume output."""
    box = check_map(ctx.path(full)).shape[0]
    pixel_size = read_header(ctx.path(full)).voxel_size[0]
    if pixel_size <= 0:
        raise RelionOutputError(f"{ctx.path(full)}: relion_reconstruct wrote no pixel size in the header")
    for half in (half1, half2):
        check_map(ctx.path(half), box)
    text = run_program(
        ["relion_image_handler", "--i", half1, "--fsc", half2, "--angpix", f"{pixel_size:g}"],
        cwd=ctx.run_dir,
        log_path=ctx.log_path,
        capture_stdout=True,
    )
    fsc_star = ctx.path(str(Path(full).parent / "fsc.star"))
    fsc_star.write_text(text)
    resolution = fsc_resolution(fsc_star)
    value = volume_value(
        ctx.run_dir,
        ctx.path(full),
        pixel_size,
        box,
        resolution=resolution,
        half_maps=(ctx.path(half1), ctx.path(half2)),
        symmetry=symmetry,
        fsc=str(Path(full).parent / "fsc.star"),
    )
    return {"resolution_a": resolution, "outputs": {"volume": output_result(full, value)}}


# ------------------------------------------------------------------------ postprocess


def auto_mask_threshold(volume: np.ndarray, pixel_size: float, lowpass_a: float, fraction: float = 0.1) -> float:
    """``fraction`` of the maximum of the map low-pass filtered (Gaussian) to ``lowpass_a`` Å.

    What a user would pick by eye for a well-behaved map: the filtered density's outline.
    """
    n = volume.shape[0]
    freq = np.fft.fftfreq(n, d=pixel_size)
    f2 = freq[:, None, None] ** 2 + freq[None, :, None] ** 2 + freq[None, None, :] ** 2
    sigma_f = 1.0 / lowpass_a
    filtered = np.fft.ifftn(np.fft.fftn(volume) * np.exp(-0.5 * f2 / sigma_f**2)).real
    return float(fraction * filtered.max())


def mask_step(
    ctx: StepContext,
    volume: str,
    out: str,
    threshold: float | None,
    extend_px: int,
    soft_edge_px: int,
    lowpass_a: float,
) -> dict[str, Any]:
    """relion_mask_create on the refined map; checks the mask is neither empty nor the box."""
    info = read_header(volume)
    pixel = info.voxel_size[0]
    if threshold is None:
        threshold = auto_mask_threshold(read_volume(volume), pixel, lowpass_a)
    ctx.path(out).parent.mkdir(parents=True, exist_ok=True)
    args = [
        "--i",
        volume,
        "--o",
        out,
        "--ini_threshold",
        f"{threshold:.6g}",
        "--extend_inimask",
        str(extend_px),
        "--width_soft_edge",
        str(soft_edge_px),
        "--lowpass",
        f"{lowpass_a:g}",
        "--angpix",
        f"{pixel:g}",
    ]
    run_program(["relion_mask_create", *args], cwd=ctx.run_dir, log_path=ctx.log_path)
    mask = check_map(ctx.path(out), info.shape[0])
    inside = float((mask > 0.5).mean())
    if not 0.001 < inside < 0.9:
        raise RelionOutputError(
            f"the mask from relion_mask_create at threshold {threshold:.4g} covers {inside:.1%} of the box; "
            "set param 'mask_threshold' to a density level that outlines the particle"
        )
    return {"mask": out, "threshold": threshold, "fraction_inside": round(inside, 4)}


def postprocess_step(
    ctx: StepContext,
    half1: str,
    half2: str,
    mask: str,
    out: str,
    symmetry: str,
    auto_bfactor: bool,
    bfactor: float,
) -> dict[str, Any]:
    """relion_postprocess: masked FSC, sharpening; announces the sharpened map as a Volume."""
    info = read_header(half1)
    pixel = info.voxel_size[0]
    if pixel <= 0:
        raise RelionInputError(f"{half1}: the half map does not give its pixel size")
    ctx.path(out).parent.mkdir(parents=True, exist_ok=True)
    args = ["--i", half1, "--i2", half2, "--mask", mask, "--angpix", f"{pixel:g}", "--o", out]
    args += ["--auto_bfac"] if auto_bfactor else ["--adhoc_bfac", f"{bfactor:g}"]
    run_program(["relion_postprocess", *args], cwd=ctx.run_dir, log_path=ctx.log_path)
    sharpened = ctx.path(f"{out}.mrc")
    check_map(sharpened, info.shape[0])
    check_map(ctx.path(f"{out}_masked.mrc"), info.shape[0])
    resolution, used = postprocess_resolution(ctx.path(f"{out}.star"))
    value = volume_value(
        ctx.run_dir,
        sharpened,
        pixel,
        info.shape[0],
        resolution=resolution,
        symmetry=symmetry,
        masked=f"{out}_masked.mrc",
        mask=mask,
        bfactor=used,
        fsc=f"{out}.star",
    )
    return {"resolution_a": resolution, "bfactor": used, "outputs": {"volume": output_result(f"{out}.mrc", value)}}
