"""Whole-frame motion correction of a movie and its dose-weighted sum.

Alignment (Unblur-like, Grant & Grigorieff 2015; MotionCor2's global step): each frame is
cross-correlated with the sum of all *other* aligned frames (leaving a frame out of its
own reference keeps its shot noise from pulling the peak to its current position), the
peak is located to sub-pixel precision by a parabola through its neighbours, the new
shifts are smoothed along the frame axis (the stage and beam-induced motion are smooth,
per-frame estimates are not) and the loop repeats until the shifts stop changing. As the
frames are re-shifted by the current estimate every iteration, the residual peaks sit
near zero where the parabola is unbiased, so the fit error does not accumulate.

Correlations are band-limited by a B-factor filter (``exp(-B s² / 4)``, default 1500 Å²,
which keeps the ~10 Å signal that carries the drift and drops shot noise); the Fourier
grid is cropped where that filter falls below 1e-3, so the correlation maps are computed
on a binned grid at no loss of information. All FFTs go through ``xp``.

Shifts are ``(dx, dy)`` pixels of each frame's content (``movies.SimulatedMovie`` uses the
same sign); they are reported with zero mean over the frames, so the aligned sum sits at
the movie's average position.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import xp as xpmod
from .micrograph_fourier import crop_rfft2, exposure_filter, frequency_grid, shift_rfft2

FILTER_FLOOR = 1e-3  # crop the correlation grid where the B-factor filter is below this


class MotionCorrectionError(ValueError):
    """A movie that cannot be aligned as given (too few frames, wrong shape, ...)."""


@dataclass
class MotionCorrectionResult:
    """Aligned sums and the per-frame shifts that produced them."""

    aligned_sum: np.ndarray  # (ny, nx) float32, plain sum of the aligned frames
    dose_weighted_sum: np.ndarray | None  # (ny, nx) float32, None without dose information
    shifts: np.ndarray  # (n_frames, 2) (dx, dy) px, smoothed, zero mean: what was applied
    raw_shifts: np.ndarray  # (n_frames, 2) last unsmoothed estimates, zero mean
    iterations: int
    converged: bool


def smooth_trajectory(shifts: np.ndarray, window: int = 7, polyorder: int = 2) -> np.ndarray:
    """Savitzky-Golay smoothing of a ``(n_frames, 2)`` trajectory along the frame axis.

    A local polynomial keeps steady drift and its curvature (a Gaussian blur would pull
    the ends of a linear drift inwards); too short a movie is returned unchanged.
    """
    n = shifts.shape[0]
    w = min(window, n if n % 2 else n - 1)
    if w <= polyorder:
        return shifts.copy()
    from scipy.signal import savgol_filter  # here: see emtools/kernels/__init__.py

    return savgol_filter(shifts, w, polyorder, axis=0, mode="interp")


def alignment_grid(shape: tuple[int, int], pixel_size_a: float, bfactor_a2: float) -> tuple[int, int]:
    """Even real-space size of the grid on which correlations are computed (see module doc)."""
    s_max = np.sqrt(4.0 * np.log(1.0 / FILTER_FLOOR) / bfactor_a2) if bfactor_a2 > 0 else np.inf
    out = []
    for n in shape:
        keep = 2 * int(np.ceil(s_max * pixel_size_a * n)) + 2
        out.append(min(n, max(32, keep + keep % 2)))
    return out[0], out[1]


def correlation_peaks(cc: Any, max_shift: tuple[float, float]) -> np.ndarray:
    """Sub-pixel position (dx, dy) of the highest peak of each unshifted correlation map.

    ``cc`` is ``(N, ny, nx)`` with zero shift at ``[0, 0]``; only shifts within
    ``max_shift`` (x, y) pixels are searched. The sub-pixel offset is the vertex of the
    parabola through the peak and its two neighbours along each axis, clamped to ±0.5.
    """
    xp = xpmod.array_module(cc)
    n, ny, nx = cc.shape
    mx = int(min(np.ceil(max_shift[0]), nx // 2 - 2))
    my = int(min(np.ceil(max_shift[1]), ny // 2 - 2))
    oy = np.arange(-my - 1, my + 2)
    ox = np.arange(-mx - 1, mx + 2)
    win = cc[:, xp.asarray(oy % ny)][:, :, xp.asarray(ox % nx)]
    win = xpmod.to_numpy(win).astype(np.float64)
    inner = win[:, 1:-1, 1:-1].reshape(n, -1)
    flat = np.argmax(inner, axis=1)
    iy, ix = np.unravel_index(flat, (2 * my + 1, 2 * mx + 1))
    iy, ix = iy + 1, ix + 1
    rows = np.arange(n)
    c0 = win[rows, iy, ix]

    def vertex(cm: np.ndarray, cp: np.ndarray) -> np.ndarray:
        denom = cm - 2.0 * c0 + cp
        safe = np.where(denom < 0, denom, -1.0)
        return np.where(denom < 0, np.clip(0.5 * (cm - cp) / safe, -0.5, 0.5), 0.0)

    dx = vertex(win[rows, iy, ix - 1], win[rows, iy, ix + 1])
    dy = vertex(win[rows, iy - 1, ix], win[rows, iy + 1, ix])
    return np.stack([ox[ix] + dx, oy[iy] + dy], axis=1)


def estimate_shifts(
    frames: Any,
    pixel_size_a: float,
    bfactor_a2: float = 1500.0,
    max_shift_px: float = 40.0,
    max_iterations: int = 10,
    tolerance_px: float = 0.01,
    smoothing_window: int = 7,
    batch: int = 8,
    xp: ModuleType = np,
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Iterative alignment of ``frames`` ``(n, ny, nx)`` (see the module docstring).

    Returns ``(shifts, raw_shifts, iterations, converged)``, shifts in original pixels.
    ``batch`` frames share one batched inverse FFT, bounding memory on large movies.
    """
    stack = xp.asarray(frames, dtype=xp.float32)
    if stack.ndim != 3 or stack.shape[0] < 2:
        raise MotionCorrectionError(f"need a stack of at least 2 frames (n, ny, nx), got {stack.shape}")
    n = stack.shape[0]
    shape = stack.shape[1:]
    small = alignment_grid(shape, pixel_size_a, bfactor_a2)
    scale = np.array([shape[1] / small[1], shape[0] / small[0]])  # original px per grid px (x, y)
    ft = crop_rfft2(xp.fft.rfft2(stack), small)
    fy, fx = frequency_grid(small, 1.0, xp)  # cycles per grid pixel
    fy, fx = fy / (pixel_size_a * scale[1]), fx / (pixel_size_a * scale[0])
    filt = xp.exp(-0.25 * bfactor_a2 * (fy * fy + fx * fx)).astype(xp.float32)
    filt[0, 0] = 0.0  # the mean carries no position
    max_shift = (max_shift_px / scale[0], max_shift_px / scale[1])

    shifts = np.zeros((n, 2))  # in grid pixels
    raw = shifts
    converged = False
    iterations = 0
    while iterations < max_iterations and not converged:
        iterations += 1
        total = xp.zeros(ft.shape[1:], dtype=ft.dtype)
        for b0 in range(0, n, batch):
            total += shift_rfft2(ft[b0 : b0 + batch], -shifts[b0 : b0 + batch], small, xp).sum(axis=0)
        residual = []
        for b0 in range(0, n, batch):
            aligned = shift_rfft2(ft[b0 : b0 + batch], -shifts[b0 : b0 + batch], small, xp)
            cross = aligned * xp.conj(total[None] - aligned) * filt
            residual.append(correlation_peaks(xp.fft.irfft2(cross, s=small), max_shift))
        raw = shifts + np.concatenate(residual)
        raw -= raw.mean(axis=0)
        new = smooth_trajectory(raw, smoothing_window)
        converged = bool(np.abs(new - shifts).max() < tolerance_px / scale.min())
        shifts = new
    return shifts * scale, raw * scale, iterations, converged


def dose_weighted_sum(
    aligned_ft: Any,
    shape: tuple[int, int],
    pixel_size_a: float,
    exposures: Any,
    voltage_kv: float = 300.0,
) -> Any:
    """Grant & Grigorieff (2015) dose-weighted sum of aligned frames given as rfft2.

    ``Σ_i q_i F_i · sqrt(N / Σ_i q_i²)`` with ``q_i`` the exposure filter at each frame's
    mid-frame exposure: the optimal (SNR-weighted) combination, scaled so that its noise
    power equals that of the plain sum at every frequency and its mean equals the plain
    sum's. Returns the real image, float32.
    """
    xp = xpmod.array_module(aligned_ft)
    q = exposure_filter(shape, pixel_size_a, exposures, voltage_kv, xp)
    n = q.shape[0]
    norm = xp.sqrt(n / xp.maximum((q * q).sum(axis=0), 1e-30))
    weighted = (aligned_ft * q).sum(axis=0) * norm
    return xp.fft.irfft2(weighted, s=shape).astype(xp.float32)


def motion_correct(
    frames: Any,
    pixel_size_a: float,
    dose_per_frame: float | None = None,
    pre_exposure: float = 0.0,
    voltage_kv: float = 300.0,
    bfactor_a2: float = 1500.0,
    max_shift_px: float = 40.0,
    max_iterations: int = 10,
    tolerance_px: float = 0.01,
    smoothing_window: int = 7,
    xp: ModuleType = np,
) -> MotionCorrectionResult:
    """Align the frames of a movie and sum them (plain and, given a dose, dose-weighted).

    ``dose_per_frame`` and ``pre_exposure`` are in e/Å²; shifts are applied as exact
    Fourier phase ramps (periodic at the edges).
    """
    stack = xp.asarray(frames, dtype=xp.float32)
    shifts, raw, iterations, converged = estimate_shifts(
        stack,
        pixel_size_a,
        bfactor_a2=bfactor_a2,
        max_shift_px=max_shift_px,
        max_iterations=max_iterations,
        tolerance_px=tolerance_px,
        smoothing_window=smoothing_window,
        xp=xp,
    )
    shape = stack.shape[1:]
    aligned = shift_rfft2(xp.fft.rfft2(stack), -shifts, shape, xp)
    plain = xp.fft.irfft2(aligned.sum(axis=0), s=shape).astype(xp.float32)
    weighted = None
    if dose_per_frame is not None:
        exposures = pre_exposure + (np.arange(stack.shape[0]) + 0.5) * dose_per_frame
        weighted = xpmod.to_numpy(dose_weighted_sum(aligned, shape, pixel_size_a, exposures, voltage_kv))
    return MotionCorrectionResult(
        aligned_sum=xpmod.to_numpy(plain),
        dose_weighted_sum=weighted,
        shifts=shifts,
        raw_shifts=raw,
        iterations=iterations,
        converged=converged,
    )
