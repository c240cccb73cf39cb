"""Simulated particle stacks with known ground truth, for tests and demos.

Forward model, per particle i (RELION's): image_i = shift(CTF_i · P_{A_i}(V), −origin_i)
+ noise, with ``A_i`` uniform over SO(3), ``origin_i`` uniform in a disc, defocus drawn
per particle, and white Gaussian noise whose variance is the mean variance of the clean
(CTF-modulated) images divided by ``snr``. The metadata columns are the project's
particle schema: rot, tilt, psi (degrees), shift_x, shift_y (pixels, rlnOrigin sign:
the shift that centres the particle), defocus_u, defocus_v (Å), defocus_angle (degrees).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from . import xp as xpmod
from .ctf import CtfParams, ctf_2d_stack
from .filters import fourier_shift_2d
from .geometry import euler_to_matrix, matrix_to_euler, random_rotations
from .projection import FourierProjector

PARTICLE_COLUMNS = ("rot", "tilt", "psi", "shift_x", "shift_y", "defocus_u", "defocus_v", "defocus_angle")


@dataclass
class ParticleStack:
    """Images plus per-particle metadata columns (numpy arrays keyed by schema name)."""

    images: np.ndarray
    metadata: dict[str, np.ndarray]
    optics: CtfParams

    @property
    def rotations(self) -> np.ndarray:
        """Rotation matrices ``(N, 3, 3)`` of the rot/tilt/psi columns."""
        m = self.metadata
        return euler_to_matrix(m["rot"], m["tilt"], m["psi"])

    @property
    def origins(self) -> np.ndarray:
        """``(N, 2)`` rlnOrigin-style shifts (x, y) in pixels."""
        return np.stack([self.metadata["shift_x"], self.metadata["shift_y"]], axis=1)


def default_optics(pixel_size_a: float) -> CtfParams:
    """300 kV, Cs 2.7 mm, 10 % amplitude contrast: a typical Krios set-up."""
    return CtfParams(300.0, 2.7, 0.1, pixel_size_a, 15000.0, 15000.0, 0.0)


def simulate_particles(
    volume: np.ndarray,
    n_particles: int,
    pixel_size_a: float,
    snr: float = 0.1,
    max_shift_px: float = 3.0,
    defocus_range_a: tuple[float, float] = (10000.0, 25000.0),
    astigmatism_a: float = 500.0,
    apply_ctf: bool = True,
    rotations: np.ndarray | None = None,
    optics: CtfParams | None = None,
    seed: int = 0,
    xp: ModuleType = np,
) -> ParticleStack:
    """Simulate ``n_particles`` images of ``volume`` (see module docstring).

    ``snr=inf`` gives noise-free images; ``rotations`` fixes the orientations (e.g. a few
    views for 2D classification tests) instead of drawing them uniformly.
    """
    rng = np.random.default_rng(seed)
    n = volume.shape[0]
    optics = optics or default_optics(pixel_size_a)
    rot_m = random_rotations(n_particles, rng) if rotations is None else np.asarray(rotations)
    rot, tilt, psi = matrix_to_euler(rot_m)
    r = max_shift_px * np.sqrt(rng.random(n_particles))
    phi = rng.uniform(0, 2 * np.pi, n_particles)
    origins = np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)
    mean_def = rng.uniform(*defocus_range_a, n_particles)
    du = mean_def + 0.5 * astigmatism_a
    dv = mean_def - 0.5 * astigmatism_a
    dang = rng.uniform(0.0, 180.0, n_particles)

    proj = FourierProjector(volume, xp=xp)
    ft = proj.project_ft(xp.asarray(rot_m))
    if apply_ctf:
        ft = ft * ctf_2d_stack(optics, du, dv, dang, (n, n), xp=xp)
    ft = fourier_shift_2d(ft, -xp.asarray(origins), xp)
    clean = xpmod.to_numpy(xpmod.centered_irfft2(ft, (n, n), xp)).astype(np.float32)
    if np.isfinite(snr):
        sigma = np.sqrt(clean.var(axis=(1, 2)).mean() / snr)
        clean += rng.normal(0.0, sigma, clean.shape).astype(np.float32)
    metadata = {
        "rot": rot,
        "tilt": tilt,
        "psi": psi,
        "shift_x": origins[:, 0],
        "shift_y": origins[:, 1],
        "defocus_u": du,
        "defocus_v": dv,
        "defocus_angle": dang,
    }
    return ParticleStack(images=clean, metadata=metadata, optics=optics)
