"""Projection matching: best orientation and shift of each particle against a reference.

Score of particle ``X`` (CTF ``C``) against projection ``P`` with origin ``o``:
``Re Σ_k w_k conj(X) C P e^{+2πi k·o/n} / sqrt(Σ_k w_k C² |P|²)``, a normalised
cross-correlation over the Fourier coefficients inside the current resolution limit
(``w_k = 2`` for ``kx > 0`` counts the Hermitian half that rfft2 omits). The DC term is
left out so that a background offset cannot decide an orientation.

* :func:`global_search` scores every particle against every (orientation, shift) of a
  grid with one real matrix product per batch of orientations;
* :func:`local_search` scores each particle against small perturbations of its own
  current orientation and shift (templates differ per particle: batched einsum);
* :func:`translational_search` finds the best origin at a fixed orientation from a full
  cross-correlation map, to sub-pixel precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import xp as xpmod
from .filters import rfft_grid_2d
from .projection import FourierProjector


@dataclass
class MatchData:
    """Particles reduced to the Fourier coefficients that take part in matching."""

    kx: Any  # (K,) index units
    ky: Any
    weight: Any  # (K,) 1 or 2
    xc: Any  # (N, K) complex64, conj(X)·C·w, ready for dot products with templates
    c2w: Any  # (N, K) float32, C²·w for the normalisation
    n: int


def frequency_selection(n: int, r_max: float, unique: bool = True, xp: ModuleType = np) -> Any:
    """Boolean rfft2-layout mask of the coefficients with ``1 <= |k| <= r_max``;
    ``unique`` keeps one of each Hermitian pair of the kx = 0 column (for dot products),
    otherwise both (for inverse FFTs, which need the column complete)."""
    ky, kx = rfft_grid_2d(n, xp)
    r2 = kx * kx + ky * ky
    sel = (r2 >= 1.0) & (r2 <= r_max * r_max)
    return sel & ~((kx == 0) & (ky < 0)) if unique else sel


def prepare_match_data(images_ft: Any, ctfs: Any | None, r_max: float, xp: ModuleType = np) -> MatchData:
    """Select the matching coefficients of centred rfft2 particles (no origin applied)."""
    n = images_ft.shape[-2]
    sel = frequency_selection(n, r_max, xp=xp)
    ky, kx = rfft_grid_2d(n, xp)
    kx, ky = kx[sel], ky[sel]
    w = xp.where(kx > 0, 2.0, 1.0).astype(xp.float32)
    x = xp.asarray(images_ft)[:, sel]
    c = xp.ones(x.shape, dtype=xp.float32) if ctfs is None else xp.asarray(ctfs)[:, sel]
    return MatchData(kx, ky, w, (xp.conj(x) * c * w).astype(xp.complex64), (c * c * w).astype(xp.float32), n)


def _origin_phase(data: MatchData, origins: Any, xp: ModuleType) -> Any:
    """``e^{+2πi k·o/n}`` for origins ``(..., 2)`` -> ``(..., K)`` complex64."""
    o = xp.asarray(origins, dtype=xp.float32)
    ph = (2.0 * np.pi / data.n) * (o[..., 0, None] * data.kx + o[..., 1, None] * data.ky)
    return xp.exp(1j * ph).astype(xp.complex64)


def shift_grid(max_shift_px: float, step_px: float) -> np.ndarray:
    """Origins ``(T, 2)`` on a square grid of ``step_px`` inside a disc of ``max_shift_px``."""
    m = int(np.floor(max_shift_px / step_px))
    ax = np.arange(-m, m + 1) * step_px
    g = np.stack(np.meshgrid(ax, ax, indexing="xy"), axis=-1).reshape(-1, 2)
    return g[np.hypot(g[:, 0], g[:, 1]) <= max_shift_px + 1e-9]


def global_search(
    projector: FourierProjector,
    data: MatchData,
    rotations: np.ndarray,
    origins: np.ndarray,
    max_scores: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best (orientation index, origin index, score) per particle over the full grid.

    Memory is bounded by ``max_scores`` scores per batch of orientations.
    """
    xp = projector.xp
    n_part = data.xc.shape[0]
    n_t = len(origins)
    a = xp.concatenate([data.xc.real, -data.xc.imag], axis=1)  # Re(xc·t) = xr tr - xi ti
    phases = _origin_phase(data, xp.asarray(origins), xp)  # (T, K)
    best = xp.full(n_part, -np.inf, dtype=xp.float32)
    best_o = xp.zeros(n_part, dtype=xp.int64)
    best_t = xp.zeros(n_part, dtype=xp.int64)
    step = max(1, max_scores // max(1, n_part * n_t))
    for b in range(0, len(rotations), step):
        p = projector.slices(rotations[b : b + step], data.kx, data.ky)  # (Ob, K)
        den = xp.sqrt(xp.maximum(data.c2w @ (xp.abs(p) ** 2).T, 1e-30))  # (N, Ob)
        tmpl = (p[:, None, :] * phases[None]).reshape(-1, p.shape[1])  # (Ob*T, K)
        b_mat = xp.concatenate([tmpl.real, tmpl.imag], axis=1)
        score = (a @ b_mat.T).reshape(n_part, p.shape[0], n_t) / den[:, :, None]
        flat = score.reshape(n_part, -1)
        arg = xp.argmax(flat, axis=1)
        val = flat[xp.arange(n_part), arg]
        better = val > best
        best = xp.where(better, val, best)
        best_o = xp.where(better, b + arg // n_t, best_o)
        best_t = xp.where(better, arg % n_t, best_t)
    return xpmod.to_numpy(best_o), xpmod.to_numpy(best_t), xpmod.to_numpy(best)


def local_search(
    projector: FourierProjector,
    data: MatchData,
    rotations: np.ndarray,
    origins: np.ndarray,
    perturbations: np.ndarray,
    origin_offsets: np.ndarray,
    batch: int = 128,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refine each particle's rotation ``(N, 3, 3)`` and origin ``(N, 2)`` over
    ``perturbations @ rotation`` (J) × ``origin + offsets`` (T); returns the new
    rotations, origins and scores."""
    xp = projector.xp
    n_part = rotations.shape[0]
    n_j, n_t = len(perturbations), len(origin_offsets)
    new_rot = np.empty_like(rotations)
    new_org = np.empty_like(origins)
    scores = np.empty(n_part)
    offs = np.asarray(origin_offsets)
    for b in range(0, n_part, batch):
        sl = slice(b, min(b + batch, n_part))
        cand = np.einsum("jab,nbc->njac", perturbations, rotations[sl])  # (nb, J, 3, 3)
        nb = cand.shape[0]
        p = projector.slices(cand.reshape(-1, 3, 3), data.kx, data.ky).reshape(nb, n_j, -1)
        org = origins[sl, None, :] + offs[None]  # (nb, T, 2)
        q = data.xc[sl, None, :] * _origin_phase(data, xp.asarray(org), xp)  # (nb, T, K)
        num = xp.matmul(p, xp.swapaxes(q, 1, 2)).real  # (nb, J, T)
        den = xp.sqrt(xp.maximum(xp.einsum("nk,njk->nj", data.c2w[sl], xp.abs(p) ** 2), 1e-30))
        score = xpmod.to_numpy((num / den[:, :, None]).reshape(nb, -1))
        arg = np.argmax(score, axis=1)
        j, t = arg // n_t, arg % n_t
        idx = np.arange(nb)
        new_rot[sl] = cand[idx, j]
        new_org[sl] = org[idx, t]
        scores[sl] = score[idx, arg]
    return new_rot, new_org, scores


def translational_search(
    projector: FourierProjector,
    images_ft: Any,
    ctfs: Any | None,
    rotations: np.ndarray,
    max_shift_px: float,
    r_max: float,
    batch: int = 256,
) -> np.ndarray:
    """Best origin ``(N, 2)`` per particle at fixed orientations, sub-pixel by a parabola
    through the correlation peak and its neighbours along x and y."""
    xp = projector.xp
    n = projector.n
    sel_full = frequency_selection(n, r_max, unique=False, xp=xp)
    yy, xx = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    allowed = xp.asarray(np.hypot(xx, yy) <= max_shift_px)
    out = np.empty((rotations.shape[0], 2))
    for b in range(0, rotations.shape[0], batch):
        sl = slice(b, b + batch)
        p = projector.project_ft(rotations[sl], max_radius=r_max)
        x = xp.asarray(images_ft[sl])
        prod = xp.conj(x) * p if ctfs is None else xp.conj(x) * xp.asarray(ctfs[sl]) * p
        prod = xp.where(sel_full, prod, 0)
        # irfft2 evaluates Σ_k F(k) e^{+2πi k·x/n}: the score at origin x, over the full plane
        cc = xp.fft.fftshift(xp.fft.irfft2(prod, s=(n, n), axes=(-2, -1)), axes=(-2, -1))
        cc = xp.where(allowed[None], cc, -xp.inf)
        flat = xpmod.to_numpy(cc.reshape(cc.shape[0], -1))
        cc_np = flat.reshape(-1, n, n)
        arg = np.argmax(flat, axis=1)
        iy, ix = arg // n, arg % n
        out[sl, 0] = ix - n // 2 + _parabola(cc_np, iy, ix, axis=1)
        out[sl, 1] = iy - n // 2 + _parabola(cc_np, iy, ix, axis=0)
    return out


def _parabola(cc: np.ndarray, iy: np.ndarray, ix: np.ndarray, axis: int) -> np.ndarray:
    """Sub-pixel offset of a peak from its two neighbours along ``axis`` (0 = y, 1 = x)."""
    n = cc.shape[-1]
    idx = np.arange(cc.shape[0])
    if axis == 1:
        lo, hi = cc[idx, iy, (ix - 1) % n], cc[idx, iy, (ix + 1) % n]
    else:
        lo, hi = cc[idx, (iy - 1) % n, ix], cc[idx, (iy + 1) % n, ix]
    mid = cc[idx, iy, ix]
    ok = np.isfinite(lo) & np.isfinite(hi)  # a neighbour outside the allowed disc is -inf
    lo, hi = np.where(ok, lo, mid), np.where(ok, hi, mid)
    denom = lo - 2 * mid + hi
    ok &= denom < 0
    off = np.where(ok, 0.5 * (lo - hi) / np.where(ok, denom, -1.0), 0.0)
    return np.clip(off, -0.5, 0.5)
