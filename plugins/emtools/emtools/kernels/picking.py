"""Particle picking on a micrograph: blob picker and template picker.

* :func:`pick_blobs` filters the micrograph with a scale-normalised Laplacian of Gaussian
  at ``σ = radius / √2`` (the scale at which a uniform disc of that radius responds
  most) and scores pixels by a robust z-score of the response (median and MAD), so a
  threshold means the same on every micrograph whatever its dose.
* :func:`pick_templates` computes the locally normalised cross-correlation (Lewis 1995)
  of the micrograph with every in-plane rotation of every template inside a circular
  mask: one FFT of the micrograph, one batched FFT per group of templates.

Both then keep the local maxima that are the highest within ``min_distance_px`` (square
window, so picks are at least that far apart), farther than ``edge_px`` from the border
(where boxes would be incomplete and FFT maps wrap around) and above a score threshold.
Particles are assumed darker than the background (raw micrographs) unless
``dark_particles=False``; templates are white-on-black, as RELION's references are.
Coordinates are ``(x, y)`` pixels, x the column.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import xp as xpmod
from .ctf import CtfParams, ctf_2d
from .filters import rotate_images, soft_spherical_mask
from .micrograph_fourier import frequency_grid

MAD_TO_SIGMA = 1.4826  # MAD of a Gaussian times this is its standard deviation


class PickingError(ValueError):
    """Picking inputs that cannot work (templates larger than the micrograph, ...)."""


@dataclass
class Picks:
    """Picked positions, best first."""

    coordinates: np.ndarray  # (N, 2) float64, (x, y) pixels
    scores: np.ndarray  # (N,) robust z-score (blobs) or NCC (templates)
    template_index: np.ndarray | None = None  # (N,) which template matched best
    angles_deg: np.ndarray | None = None  # (N,) in-plane rotation of that template


def robust_threshold(score_map: np.ndarray, n_sigma: float) -> float:
    """``median + n_sigma · 1.4826 · MAD`` of a score map: a noise-level threshold that
    the particles themselves (a minority of pixels) barely move."""
    med = float(np.median(score_map))
    mad = float(np.median(np.abs(score_map - med)))
    return med + n_sigma * MAD_TO_SIGMA * mad


def find_peaks(
    score_map: np.ndarray,
    min_distance_px: float,
    edge_px: float,
    min_score: float,
    score_percentile: float | None = None,
    max_peaks: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Non-maximum suppression: ``(coordinates (N, 2) x, y; scores (N,))``, best first.

    ``score_percentile`` additionally drops the peaks scoring below that percentile of
    all peaks above ``min_score`` (e.g. 20 keeps the best 80 %).
    """
    d = max(1, int(np.ceil(min_distance_px)))
    from scipy.ndimage import maximum_filter  # here: see emtools/kernels/__init__.py

    local_max = score_map == maximum_filter(score_map, size=2 * d + 1, mode="constant", cval=-np.inf)
    ny, nx = score_map.shape
    e = int(np.ceil(edge_px))
    inside = np.zeros_like(local_max)
    inside[e : ny - e, e : nx - e] = True
    iy, ix = np.nonzero(local_max & inside & (score_map >= min_score))
    scores = score_map[iy, ix]
    if score_percentile is not None and scores.size:
        keep = scores >= np.percentile(scores, score_percentile)
        iy, ix, scores = iy[keep], ix[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")[: max_peaks or None]
    return np.stack([ix[order], iy[order]], axis=1).astype(np.float64), scores[order]


def log_response(micrograph: Any, radius_px: float, xp: ModuleType = np) -> np.ndarray:
    """Scale-normalised ``-σ² ∇² (G_σ ⊛ image)`` at ``σ = radius / √2``: positive on
    bright blobs of that radius. Computed in Fourier space as ``4π² σ² s² e^{-2π² σ² s²}``."""
    img = xp.asarray(micrograph, dtype=xp.float32)
    sigma = radius_px / np.sqrt(2.0)
    fy, fx = frequency_grid(img.shape, 1.0, xp)
    s2 = fy * fy + fx * fx
    filt = (4.0 * np.pi**2 * sigma**2) * s2 * xp.exp(-2.0 * np.pi**2 * sigma**2 * s2)
    return xpmod.to_numpy(xp.fft.irfft2(xp.fft.rfft2(img) * filt, s=img.shape)).astype(np.float32)


def pick_blobs(
    micrograph: Any,
    radius_px: float,
    min_distance_px: float | None = None,
    threshold_sigma: float = 4.0,
    score_percentile: float | None = None,
    edge_px: float | None = None,
    dark_particles: bool = True,
    max_picks: int | None = None,
    xp: ModuleType = np,
) -> Picks:
    """Blob picker (see the module docstring); scores are robust z-scores of the LoG.

    Defaults: ``min_distance_px = 2 · radius`` (touching particles) and
    ``edge_px = radius``; ``threshold_sigma`` is in robust standard deviations.
    """
    img = xp.asarray(micrograph, dtype=xp.float32)
    response = log_response(-img if dark_particles else img, radius_px, xp)
    med = float(np.median(response))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(response - med)))
    z = (response - med) / max(sigma, 1e-30)
    coords, scores = find_peaks(
        z,
        min_distance_px if min_distance_px is not None else 2.0 * radius_px,
        edge_px if edge_px is not None else radius_px,
        threshold_sigma,
        score_percentile,
        max_picks,
    )
    return Picks(coordinates=coords, scores=scores)


def rotated_templates(
    templates: Any, angle_step_deg: float, xp: ModuleType = np
) -> tuple[Any, np.ndarray, np.ndarray]:
    """Every template at every in-plane angle ``0, step, ... < 360``: ``(stack, index, angle)``."""
    t = xp.asarray(templates, dtype=xp.float32)
    if t.ndim == 2:
        t = t[None]
    angles = np.arange(0.0, 360.0, angle_step_deg)
    idx = np.repeat(np.arange(t.shape[0]), angles.size)
    ang = np.tile(angles, t.shape[0])
    stack = rotate_images(t[xp.asarray(idx)], xp.asarray(ang), xp=xp)
    return stack, idx, ang


def ncc_maps(
    micrograph: Any, templates: Any, mask_radius_px: float, batch: int = 8, xp: ModuleType = np
) -> tuple[np.ndarray, np.ndarray]:
    """Best locally normalised cross-correlation over ``templates`` ``(K, b, b)`` at every
    pixel (template centre ``b // 2`` on that pixel) and the index of the template.

    ``NCC(p) = Σ_m T'(x) I(p+x) / sqrt(n · var_m(I around p))`` with ``T'`` the template
    made zero-mean and unit-norm inside the mask ``m`` of ``n`` pixels.
    """
    img = xp.asarray(micrograph, dtype=xp.float32)
    ny, nx = img.shape
    b = templates.shape[-1]
    if b > min(ny, nx):
        raise PickingError(f"template box {b} is larger than the micrograph {img.shape}")
    mask = (soft_spherical_mask((b, b), mask_radius_px, 0.0, xp) > 0.5).astype(xp.float32)
    n_mask = float(mask.sum())

    def padded_ft(boxes: Any) -> Any:
        # template centre at [0, 0] of a micrograph-sized canvas, wrapping around
        canvas = xp.zeros(boxes.shape[:-2] + (ny, nx), dtype=xp.float32)
        canvas[..., :b, :b] = boxes
        canvas = xp.roll(canvas, (-(b // 2), -(b // 2)), axis=(-2, -1))
        return xp.fft.rfft2(canvas)

    img_ft = xp.fft.rfft2(img)
    mask_ft = xp.conj(padded_ft(mask))
    local_sum = xp.fft.irfft2(img_ft * mask_ft, s=(ny, nx))
    local_sq = xp.fft.irfft2(xp.fft.rfft2(img * img) * mask_ft, s=(ny, nx))
    local_std = xp.sqrt(xp.clip(local_sq - local_sum * local_sum / n_mask, 1e-12, None))

    t = xp.asarray(templates, dtype=xp.float32) * mask
    t = (t - (t.sum(axis=(-2, -1), keepdims=True) / n_mask)) * mask
    t = t / xp.sqrt((t * t).sum(axis=(-2, -1), keepdims=True))
    best = xp.full((ny, nx), -xp.inf, dtype=xp.float32)
    best_idx = xp.zeros((ny, nx), dtype=xp.int64)
    for k0 in range(0, t.shape[0], batch):
        cc = xp.fft.irfft2(img_ft[None] * xp.conj(padded_ft(t[k0 : k0 + batch])), s=(ny, nx)) / local_std
        k_best = xp.argmax(cc, axis=0)
        v_best = xp.max(cc, axis=0)
        better = v_best > best
        best = xp.where(better, v_best, best)
        best_idx = xp.where(better, k_best + k0, best_idx)
    return xpmod.to_numpy(best).astype(np.float32), xpmod.to_numpy(best_idx)


def pick_templates(
    micrograph: Any,
    templates: Any,
    angle_step_deg: float = 15.0,
    mask_radius_px: float | None = None,
    min_distance_px: float | None = None,
    min_ncc: float | None = None,
    threshold_sigma: float = 5.0,
    score_percentile: float | None = None,
    edge_px: float | None = None,
    dark_particles: bool = True,
    ctf: CtfParams | None = None,
    max_picks: int | None = None,
    xp: ModuleType = np,
) -> Picks:
    """Template picker (see the module docstring); scores are NCC values.

    ``templates`` ``(M, b, b)``, white particles centred at ``b // 2``. The threshold is
    ``min_ncc`` when given, else ``threshold_sigma`` robust standard deviations above the
    median of the best-NCC map. ``ctf`` (the micrograph's) is applied to the templates so
    that they look like the particles do. Defaults: mask radius ``b/2 - 1``, minimum
    distance ``b/2``, edge ``b/2``.
    """
    tmpl = xp.asarray(templates, dtype=xp.float32)
    if tmpl.ndim == 2:
        tmpl = tmpl[None]
    b = tmpl.shape[-1]
    if ctf is not None:
        ft = xpmod.centered_rfft2(tmpl, xp) * ctf_2d(ctf, (b, b), xp=xp)
        tmpl = xpmod.centered_irfft2(ft, (b, b), xp).astype(xp.float32)
    stack, idx, ang = rotated_templates(tmpl, angle_step_deg, xp)
    img = xp.asarray(micrograph, dtype=xp.float32)
    best, best_k = ncc_maps(-img if dark_particles else img, stack, mask_radius_px or b / 2 - 1, xp=xp)
    threshold = min_ncc if min_ncc is not None else robust_threshold(best, threshold_sigma)
    coords, scores = find_peaks(
        best,
        min_distance_px if min_distance_px is not None else b / 2,
        edge_px if edge_px is not None else b / 2,
        threshold,
        score_percentile,
        max_picks,
    )
    k = best_k[coords[:, 1].astype(np.int64), coords[:, 0].astype(np.int64)]
    return Picks(coordinates=coords, scores=scores, template_index=idx[k], angles_deg=ang[k])
