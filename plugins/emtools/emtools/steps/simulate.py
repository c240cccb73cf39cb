"""Steps of ``emtools.simulate``: a phantom, movies of it, and the ground truth kept aside.

Forward model of one exposure (each stage is a kernel of :mod:`emtools.kernels`):

1. ``particles_per_micrograph`` projections of the phantom at orientations uniform over
   SO(3), placed at least one box apart (``movies.random_positions``);
2. an amorphous ice/carbon background: a Gaussian random field with a decaying spectrum
   whose standard deviation is ``background`` times that of the particle projections. It
   carries Thon rings over the whole micrograph, as real ice does; without it the rings
   come from the particles alone and CTF fitting of sparse fields is unreliable;
3. ``movies.simulate_movie``: the micrograph's CTF (defocus drawn per micrograph), drift
   along a smooth trajectory, radiation damage (Grant & Grigorieff 2015) and Poisson shot
   noise for ``dose`` e/Å² spread over ``frames`` frames.

``snr`` fixes the contrast: it is the variance of a CTF-modulated particle projection over
its box, divided by the shot-noise variance of the whole exposure per pixel, as
``simulate_particles`` defines it for particle stacks (radiation damage then lowers the
high-resolution part further, as it does in real data).

Ground truth written next to the movies: ``ground_truth/volume.mrc``, ``particles.star``
(RELION 3.1: micrograph name, position in the motion-corrected sum — the drift-free frame
shifted by the mean drift, since aligned sums sit at the movie's mean position —,
angles and defocus) and ``movies.json`` (per movie: drift per frame, defocus).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emtools.kernels import movies
from emtools.kernels import xp as xpmod
from emtools.kernels.ctf import CtfParams, ctf_2d_stack
from emtools.kernels.geometry import matrix_to_euler, random_rotations
from emtools.kernels.phantom import make_phantom
from emtools.kernels.projection import FourierProjector
from emtools.steps.common import (
    acquisition,
    batch_file,
    concat_columns,
    gather_batches,
    project_path,
    write_json,
)
from orchestrator.em import mrc
from orchestrator.em.optics import Optics
from orchestrator.em.relion import particles_to_star
from orchestrator.protocol import StepContext, output_result

VOLUME = "ground_truth/volume.mrc"
TRUTH_STAR = "ground_truth/particles.star"
TRUTH_MOVIES = "ground_truth/movies.json"
BACKGROUND_DECAY_A2 = 20.0  # exp(-20 s²): the ice spectrum falls to 1/e at 1/4.5 Å
SPACING_CELLS = 1.2  # grid cells per particle the micrograph offers (random_positions)


def micrograph_side(particles: int, box: int) -> int:
    """Side (px, multiple of 32) of a square micrograph that holds ``particles`` boxes.

    ``random_positions`` puts one candidate per cell of pitch 1.5 × spacing (spacing = one
    box) inside a margin of one box; the side leaves 20 % more cells than particles.
    """
    pitch = 1.5 * box
    cells = int(np.ceil(np.sqrt(SPACING_CELLS * particles)))
    return int(np.ceil((cells * pitch + 2 * box) / 32.0) * 32)


def background(shape: tuple[int, int], pixel_size_a: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance random field with the decaying spectrum of amorphous ice (see module doc)."""
    ft = np.fft.rfft2(rng.standard_normal(shape))
    fy = np.fft.fftfreq(shape[0])[:, None] / pixel_size_a
    fx = np.fft.rfftfreq(shape[1])[None, :] / pixel_size_a
    img = np.fft.irfft2(ft * np.exp(-BACKGROUND_DECAY_A2 * (fx * fx + fy * fy)), s=shape)
    return (img / img.std()).astype(np.float32)


def phantom_step(ctx: StepContext, box: int, pixel_size_a: float, seed: int) -> dict[str, Any]:
    """Write the ground-truth volume (``phantom.make_phantom``) and announce it."""
    volume = make_phantom(box, pixel_size_a, seed=seed)
    path = ctx.path(VOLUME)
    path.parent.mkdir(parents=True, exist_ok=True)
    mrc.write_volume(path, volume, pixel_size_a)
    value = {"pixel_size_a": pixel_size_a, "box": box, "ground_truth": True}
    return {"outputs": {"volume": output_result(VOLUME, value)}}


def simulate_exposure(projector: FourierProjector, index: int, box: int, pixel_size_a: float, side: int,
                      particles: int, sim: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Frames ``(frames, side, side)`` of exposure ``index`` and its ground truth (module doc)."""
    rng = np.random.default_rng([sim["seed"], index])
    shape = (side, side)
    positions = movies.random_positions(shape, particles, box, box, seed=int(rng.integers(2**31)))
    rotations = random_rotations(particles, rng)
    images = xpmod.to_numpy(projector.project(rotations))
    mean_defocus = rng.uniform(sim["defocus_min_a"], sim["defocus_max_a"])
    astigmatism = rng.uniform(0.0, sim["astigmatism_a"])
    du, dv, angle = mean_defocus + astigmatism / 2, mean_defocus - astigmatism / 2, rng.uniform(0.0, 180.0)
    ctf = CtfParams(sim["voltage_kv"], sim["cs_mm"], sim["amplitude_contrast"], pixel_size_a, du, dv, angle)
    modulated = xpmod.centered_irfft2(
        xpmod.centered_rfft2(images) * ctf_2d_stack(ctf, [du], [dv], [angle], (box, box)), (box, box))
    signal_var = float(modulated.var(axis=(1, 2)).mean())
    clean = movies.paste_particles(shape, images, positions)
    clean += sim["background"] * float(images.std()) * background(shape, pixel_size_a, rng)
    dose_px = sim["dose"] * pixel_size_a**2
    contrast = float(np.sqrt(sim["snr"] / (dose_px * signal_var)))
    drift = movies.drift_trajectory(sim["frames"], total_drift_px=sim["drift_px"], seed=int(rng.integers(2**31)))
    movie = movies.simulate_movie(clean, n_frames=sim["frames"], dose_per_frame=sim["dose"] / sim["frames"],
                                  pixel_size_a=pixel_size_a, shifts=drift, contrast=contrast, ctf=ctf,
                                  voltage_kv=sim["voltage_kv"], seed=int(rng.integers(2**31)))
    rot, tilt, psi = matrix_to_euler(rotations)
    in_sum = positions + movie.shifts.mean(axis=0)  # where the aligned sum shows them
    truth = {"defocus_u": du, "defocus_v": dv, "defocus_angle": angle, "contrast": contrast,
             "shifts": movie.shifts.tolist(),
             "particles": {"coord_x": in_sum[:, 0].tolist(), "coord_y": in_sum[:, 1].tolist(),
                           "rot": rot.tolist(), "tilt": tilt.tolist(), "psi": psi.tolist()}}
    return movie.frames, truth


def movies_step(ctx: StepContext, batch: int, first: int, stop: int, box: int, pixel_size_a: float,
                particles: int, sim: dict[str, Any]) -> dict[str, Any]:
    """Simulate exposures ``first .. stop-1`` into ``movies/movie_NNNN.mrcs`` (int16 counts)."""
    volume = mrc.read_volume(ctx.path(VOLUME))
    projector = FourierProjector(volume)
    side = micrograph_side(particles, box)
    records = []
    for index in range(first, stop):
        frames, truth = simulate_exposure(projector, index, box, pixel_size_a, side, particles, sim)
        name = f"movie_{index + 1:04d}"
        path = ctx.path(f"movies/{name}.mrcs")
        path.parent.mkdir(parents=True, exist_ok=True)
        counts = frames.astype(np.int16) if frames.max() < np.iinfo(np.int16).max else frames
        mrc.write_stack(path, counts, pixel_size_a)
        records.append({"index": index + 1, "name": name, "path": project_path(ctx, path),
                        "n_frames": int(frames.shape[0]), **truth})
        ctx.log(f"{name}: {particles} particles, defocus {truth['defocus_u']:.0f}/{truth['defocus_v']:.0f} Å, "
                f"drift {np.ptp(np.asarray(truth['shifts']), axis=0).max():.1f} px")
    write_json(ctx.path(batch_file("movies", batch)), records)
    return {"movies": len(records), "side_px": side}


def register_step(ctx: StepContext, files: list[str], box: int, pixel_size_a: float,
                  sim: dict[str, Any]) -> dict[str, Any]:
    """Gather the batches into a SetOfMovies and write the ground-truth files."""
    records = [record for part in gather_batches(ctx, files) for record in part]
    acq = acquisition(sim["voltage_kv"], sim["cs_mm"], sim["amplitude_contrast"], pixel_size_a,
                      sim["dose"] / sim["frames"])
    columns = {"id": np.array([r["index"] for r in records], dtype=np.int64),
               "path": np.array([r["path"] for r in records], dtype=object),
               "n_frames": np.array([r["n_frames"] for r in records], dtype=np.int32)}
    set_id = ctx.register_set("movies", "Movie", columns,
                              {"acquisition": acq, "simulated": True, "ground_truth": TRUTH_STAR})
    _write_truth(ctx, records, box, pixel_size_a, sim)
    n_particles = sum(len(r["particles"]["rot"]) for r in records)
    value = {"set_id": set_id, "size": len(records), "particles": n_particles}
    truth = {"files": [VOLUME, TRUTH_STAR, TRUTH_MOVIES], "particles": n_particles}
    return {"outputs": {"movies": output_result(None, value), "ground_truth": output_result("ground_truth", truth)}}


def _write_truth(ctx: StepContext, records: list[dict[str, Any]], box: int, pixel_size_a: float,
                 sim: dict[str, Any]) -> None:
    parts = []
    for r in records:
        n = len(r["particles"]["rot"])
        parts.append({**r["particles"], "micrograph_name": [f"{r['name']}.mrc"] * n,
                      "micrograph_id": [r["index"]] * n, "defocus_u": [r["defocus_u"]] * n,
                      "defocus_v": [r["defocus_v"]] * n, "defocus_angle": [r["defocus_angle"]] * n})
    columns = concat_columns(parts)
    columns["id"] = np.arange(1, len(columns["rot"]) + 1)
    optics = Optics(1, "opticsGroup1", sim["voltage_kv"], sim["cs_mm"], sim["amplitude_contrast"], pixel_size_a, box)
    particles_to_star(columns, [optics], ctx.path(TRUTH_STAR))
    write_json(ctx.path(TRUTH_MOVIES), [{key: r[key] for key in
                                         ("name", "defocus_u", "defocus_v", "defocus_angle", "shifts", "contrast")}
                                        for r in records])


def truth_path(run_dir: Path, name: str) -> Path:
    """A ground-truth file of a simulate run (``VOLUME``, ``TRUTH_STAR``, ``TRUTH_MOVIES``)."""
    return Path(run_dir) / name
