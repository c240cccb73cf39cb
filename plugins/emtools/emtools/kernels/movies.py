"""Simulated dose-fractionated movies with known drift, for tests and demos.

Forward model of frame ``i`` (expected electrons per pixel):

``λ_i = d · (1 − c · shift(E_i ⊛ CTF ⊛ P, t_i))``

with ``P`` the clean projected specimen (a micrograph-sized image, e.g. from
:func:`paste_particles`), ``c`` the contrast (fraction of the beam scattered per unit of
``P``), ``d`` the dose per pixel per frame, ``E_i`` the radiation-damage filter of the
exposure accumulated by the middle of frame ``i`` (Grant & Grigorieff 2015) and ``t_i`` the
frame's whole-frame drift. Positive density therefore looks dark, as in raw micrographs
(RELION inverts it at extraction). Counts are Poisson (or their Gaussian approximation).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import xp as xpmod
from .ctf import CtfParams, ctf_2d
from .micrograph_fourier import exposure_filter, shift_rfft2

NOISE_MODELS = ("poisson", "gaussian", "none")


class MovieSimulationError(ValueError):
    """Simulation inputs that cannot make a movie (wrong shapes, negative dose, ...)."""


@dataclass
class SimulatedMovie:
    """Frames plus the ground truth they were made from.

    ``shifts[i]`` is the (dx, dy) displacement in pixels of frame ``i``'s content relative
    to ``signal``; ``signal`` is ``CTF ⊛ P`` (no drift, no damage, no noise), the image an
    aligned sum should correlate with.
    """

    frames: np.ndarray  # (n_frames, ny, nx) float32, electrons per pixel
    shifts: np.ndarray  # (n_frames, 2) float64, (dx, dy) pixels
    signal: np.ndarray  # (ny, nx) float32
    dose_per_frame: float  # e/Å²
    pixel_size_a: float
    pre_exposure: float = 0.0  # e/Å² before the first frame

    @property
    def exposures(self) -> np.ndarray:
        """Accumulated exposure (e/Å²) at the middle of each frame."""
        n = self.frames.shape[0]
        return self.pre_exposure + (np.arange(n) + 0.5) * self.dose_per_frame


def drift_trajectory(
    n_frames: int,
    total_drift_px: float = 10.0,
    decay_frames: float = 3.0,
    turn_deg: float = 30.0,
    seed: int = 0,
) -> np.ndarray:
    """A smooth beam-induced-motion-like trajectory ``(n_frames, 2)`` (dx, dy) px.

    Fast at first and slowing down (60 % of the path is an exponential approach with time
    constant ``decay_frames``, 40 % a steady drift), along a direction drawn from ``seed``
    that turns by ``turn_deg`` over the movie. Starts at (0, 0) and travels
    ``total_drift_px`` in all.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames, dtype=np.float64)
    t_end = max(n_frames - 1, 1)
    fast = (1.0 - np.exp(-t / decay_frames)) / (1.0 - np.exp(-t_end / decay_frames))
    path = total_drift_px * (0.6 * fast + 0.4 * t / t_end)
    phi = rng.uniform(0.0, 2.0 * np.pi) + np.deg2rad(turn_deg) * t / t_end
    # integrate the direction along the path so that the trajectory is smooth
    step = np.diff(path, prepend=0.0)
    return np.cumsum(np.stack([step * np.cos(phi), step * np.sin(phi)], axis=1), axis=0)


def gaussian_particles(
    box: int,
    sigma_px: float,
    n: int = 1,
    elongation: float = 1.0,
    angles_deg: Any = 0.0,
) -> np.ndarray:
    """``(n, box, box)`` float32 Gaussian blobs centred at ``box // 2``, peak 1.

    ``elongation > 1`` stretches the blob along its own x axis (``sigma_px · elongation``),
    turned counter-clockwise by ``angles_deg`` (scalar or one per blob): a particle whose
    orientation matters, for template picking.
    """
    ang = np.deg2rad(np.broadcast_to(np.asarray(angles_deg, dtype=np.float64), (n,)))[:, None, None]
    c = np.arange(box, dtype=np.float64) - box // 2
    y, x = c[None, :, None], c[None, None, :]
    u = x * np.cos(ang) + y * np.sin(ang)
    v = -x * np.sin(ang) + y * np.cos(ang)
    r2 = (u / (sigma_px * elongation)) ** 2 + (v / sigma_px) ** 2
    return np.exp(-0.5 * r2).astype(np.float32)


def random_positions(
    shape: tuple[int, int], n: int, min_distance_px: float, margin_px: float = 0.0, seed: int = 0
) -> np.ndarray:
    """``n`` positions (x, y) px at least ``min_distance_px`` apart and ``margin_px`` from edges.

    Jittered grid: one candidate per cell of a grid of pitch ``1.5 · min_distance``, moved
    randomly by at most half the slack, so the spacing is guaranteed without rejection.
    """
    ny, nx = shape
    pitch = 1.5 * min_distance_px
    gx = np.arange(margin_px + pitch / 2, nx - margin_px - pitch / 2 + 1e-9, pitch)
    gy = np.arange(margin_px + pitch / 2, ny - margin_px - pitch / 2 + 1e-9, pitch)
    cells = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
    if n > len(cells):
        raise MovieSimulationError(
            f"only {len(cells)} particles of spacing {min_distance_px} px fit in {shape}; asked for {n}"
        )
    rng = np.random.default_rng(seed)
    chosen = cells[rng.choice(len(cells), n, replace=False)]
    slack = 0.5 * (pitch - min_distance_px)
    return chosen + rng.uniform(-slack, slack, (n, 2))


def paste_particles(shape: tuple[int, int], particles: Any, positions_xy: Any, xp: ModuleType = np) -> Any:
    """Add particle images ``(N, b, b)`` (origin at ``b // 2``) into a ``shape`` micrograph.

    ``positions_xy`` ``(N, 2)`` are where each particle's origin lands, in pixels; the
    fractional part is applied by a Fourier shift of the box, the integer part by placing
    it. Parts outside the micrograph are dropped. The particle-side simulator's
    projections can be fed straight in. Returns float32 ``(ny, nx)``.
    """
    ny, nx = shape
    imgs = xp.asarray(particles, dtype=xp.float32)
    if imgs.ndim == 2:
        imgs = imgs[None]
    pos = np.asarray(xpmod.to_numpy(positions_xy), dtype=np.float64).reshape(-1, 2)
    if pos.shape[0] != imgs.shape[0]:
        raise MovieSimulationError(f"{imgs.shape[0]} particles but {pos.shape[0]} positions")
    b = imgs.shape[-1]
    whole = np.floor(pos)
    imgs = xp.fft.irfft2(
        shift_rfft2(xp.fft.rfft2(imgs), xp.asarray(pos - whole), (b, b), xp), s=(b, b)
    ).astype(xp.float32)
    offs = xp.arange(b) - b // 2
    ix = xp.asarray(whole[:, 0].astype(np.int64))[:, None, None] + offs[None, None, :]
    iy = xp.asarray(whole[:, 1].astype(np.int64))[:, None, None] + offs[None, :, None]
    ix, iy = xp.broadcast_to(ix, imgs.shape), xp.broadcast_to(iy, imgs.shape)
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    flat = (iy * nx + ix)[inside]
    out = xp.bincount(flat, weights=imgs[inside].astype(xp.float64), minlength=ny * nx)
    return out.reshape(ny, nx).astype(xp.float32)


def simulate_movie(
    clean: Any,
    n_frames: int = 20,
    dose_per_frame: float = 1.0,
    pixel_size_a: float = 1.0,
    shifts: Any | None = None,
    contrast: float = 0.1,
    ctf: CtfParams | None = None,
    radiation_damage: bool = True,
    pre_exposure: float = 0.0,
    noise: str = "poisson",
    voltage_kv: float = 300.0,
    seed: int = 0,
    xp: ModuleType = np,
) -> SimulatedMovie:
    """Simulate a movie of ``clean`` (see the module docstring for the forward model).

    ``shifts`` ``(n_frames, 2)`` is the drift; by default :func:`drift_trajectory` with the
    same ``seed``. ``ctf`` (same pixel size as ``pixel_size_a``) is applied before noise; ``noise`` is
    ``"poisson"``, ``"gaussian"`` (mean λ, variance λ: faster, same statistics at λ ≳ 5) or
    ``"none"``. Frames are computed in one batched FFT so that CuPy can run them.
    """
    if noise not in NOISE_MODELS:
        raise MovieSimulationError(f"noise must be one of {NOISE_MODELS}, got {noise!r}")
    if dose_per_frame <= 0 or n_frames < 1:
        raise MovieSimulationError("dose_per_frame must be positive and n_frames at least 1")
    p = xp.asarray(clean, dtype=xp.float32)
    if p.ndim != 2:
        raise MovieSimulationError(f"clean must be a 2D image, got shape {p.shape}")
    if ctf is not None and not np.isclose(ctf.pixel_size_a, pixel_size_a):
        raise MovieSimulationError(f"ctf pixel size {ctf.pixel_size_a} != pixel_size_a {pixel_size_a}")
    shape = p.shape
    if shifts is None:
        shifts = drift_trajectory(n_frames, seed=seed)
    shifts = np.asarray(xpmod.to_numpy(shifts), dtype=np.float64).reshape(-1, 2)
    if shifts.shape[0] != n_frames:
        raise MovieSimulationError(f"{shifts.shape[0]} shifts for {n_frames} frames")

    ft = xp.fft.rfft2(p)
    if ctf is not None:
        ft = ft * ctf_2d(ctf, shape, xp=xp)
    signal = xp.fft.irfft2(ft, s=shape).astype(xp.float32)
    exposures = pre_exposure + (np.arange(n_frames) + 0.5) * dose_per_frame
    frames_ft = xp.broadcast_to(ft, (n_frames,) + ft.shape)
    if radiation_damage:
        frames_ft = frames_ft * exposure_filter(shape, pixel_size_a, exposures, voltage_kv, xp)
    frames_ft = shift_rfft2(frames_ft, xp.asarray(shifts), shape, xp)
    frames = xp.fft.irfft2(frames_ft, s=shape).astype(xp.float32)

    dose_px = dose_per_frame * pixel_size_a**2
    lam = xp.clip(dose_px * (1.0 - contrast * frames), 0.0, None)
    rng = np.random.default_rng(seed + 1)
    lam_np = xpmod.to_numpy(lam)
    if noise == "poisson":
        counts = rng.poisson(lam_np).astype(np.float32)
    elif noise == "gaussian":
        counts = lam_np + np.sqrt(lam_np) * rng.standard_normal(lam_np.shape, dtype=np.float32)
    else:
        counts = lam_np
    return SimulatedMovie(
        frames=counts.astype(np.float32),
        shifts=shifts,
        signal=xpmod.to_numpy(signal),
        dose_per_frame=dose_per_frame,
        pixel_size_a=pixel_size_a,
        pre_exposure=pre_exposure,
    )
