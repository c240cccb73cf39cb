"""Fourier shell correlation and the resolution it implies.

``FSC(r) = Re Σ F1 F2* / sqrt(Σ|F1|² Σ|F2|²)`` over the voxels whose frequency radius
rounds to shell ``r`` (index units, 0 … n/2). The resolution at a threshold is where the
curve first falls below it, interpolated linearly between the two shells around the
crossing, as RELION and cryoSPARC report it (0.143 for half maps, 0.5 against a model).

A map, mask or curve holding a NaN or an infinity is an error (:class:`NonFiniteFscError`),
never a resolution: one NaN voxel makes every shell NaN, no shell then falls below the
threshold, and the curve would report the best resolution there is (Nyquist).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import xp as xpmod
from .filters import radius_grid_3d, soft_spherical_mask

__all__ = ["FscCurve", "NonFiniteFscError", "fsc", "resolution_at", "soft_spherical_mask"]


class NonFiniteFscError(ValueError):
    """A map, mask or FSC curve holds NaN or infinite values; the message says which and where."""


@dataclass
class FscCurve:
    """FSC per shell with the frequencies it belongs to."""

    shells: np.ndarray  # shell radius, index units
    fsc: np.ndarray
    box: int
    pixel_size_a: float

    @property
    def frequencies(self) -> np.ndarray:
        """Spatial frequency of each shell in 1/Å."""
        return self.shells / (self.box * self.pixel_size_a)

    def resolution(self, threshold: float = 0.143) -> float:
        """Resolution in Å where the curve crosses ``threshold`` (see :func:`resolution_at`)."""
        return resolution_at(self, threshold)


def fsc(vol1: Any, vol2: Any, pixel_size_a: float = 1.0, mask: Any | None = None) -> FscCurve:
    """FSC between two cubic volumes (optionally both multiplied by ``mask`` first)."""
    xp = xpmod.array_module(vol1, vol2)
    a = xp.asarray(vol1, dtype=xp.float64)
    b = xp.asarray(vol2, dtype=xp.float64)
    if a.shape != b.shape:
        raise ValueError(f"FSC needs volumes of one shape, got {a.shape} and {b.shape}")
    if not (np.isfinite(pixel_size_a) and pixel_size_a > 0):
        raise ValueError(f"FSC needs a positive pixel size, got {pixel_size_a}")
    _check_finite("the first map", a, xp)
    _check_finite("the second map", b, xp)
    if mask is not None:
        _check_finite("the mask", xp.asarray(mask), xp)
        a, b = a * mask, b * mask
    n = a.shape[0]
    fa, fb = xp.fft.fftn(a), xp.fft.fftn(b)
    shell = xp.rint(radius_grid_3d(n, xp)).astype(xp.int64).reshape(-1)
    n_shells = n // 2 + 1
    keep = shell < n_shells
    sh = shell[keep]
    cross = xp.bincount(sh, weights=(fa * xp.conj(fb)).real.reshape(-1)[keep], minlength=n_shells)
    pa = xp.bincount(sh, weights=(xp.abs(fa) ** 2).reshape(-1)[keep], minlength=n_shells)
    pb = xp.bincount(sh, weights=(xp.abs(fb) ** 2).reshape(-1)[keep], minlength=n_shells)
    curve = cross / xp.sqrt(xp.maximum(pa * pb, 1e-300))
    result = FscCurve(np.arange(n_shells, dtype=np.float64), xpmod.to_numpy(curve), n, pixel_size_a)
    _check_curve(result)  # finite maps of finite values can still overflow |F|² (values ~1e160)
    return result


def resolution_at(curve: FscCurve, threshold: float = 0.143) -> float:
    """Resolution (Å) at the first crossing of ``threshold`` after shell 0.

    Interpolates the shell radius linearly between the last shell above and the first
    below; returns Nyquist (2 × pixel) when the curve never falls below the threshold.
    Raises :class:`NonFiniteFscError` for a curve with NaN or infinite shells (a NaN never
    falls below anything, so such a curve would report Nyquist).
    """
    _check_curve(curve)
    if not np.isfinite(threshold):
        raise NonFiniteFscError(f"FSC threshold must be a finite number, got {threshold}")
    f = curve.fsc
    below = np.flatnonzero(f[1:] < threshold) + 1
    if below.size == 0:
        return 2.0 * curve.pixel_size_a
    i = int(below[0])
    f0, f1 = f[i - 1], f[i]
    r = curve.shells[i - 1] + (f0 - threshold) / (f0 - f1) * (curve.shells[i] - curve.shells[i - 1])
    return float(curve.box * curve.pixel_size_a / max(r, 1e-9))


def _check_finite(what: str, volume: Any, xp: Any) -> None:
    """Raise :class:`NonFiniteFscError` naming ``what``, how many voxels are bad and the first."""
    finite = xp.isfinite(volume)
    if bool(finite.all()):
        return
    bad = ~xpmod.to_numpy(finite)
    values = xpmod.to_numpy(volume)[bad]
    nans, infinities = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise NonFiniteFscError(
        f"FSC: {what} is not finite: {nans} NaN and {infinities} infinite voxel(s) of {bad.size}, "
        f"the first at (z, y, x) = {first}"
    )


def _check_curve(curve: FscCurve) -> None:
    bad = ~np.isfinite(np.asarray(curve.fsc, dtype=np.float64))
    if bad.any():
        shells = [int(s) for s in np.asarray(curve.shells)[bad][:5]]
        raise NonFiniteFscError(
            f"FSC curve is not finite in {int(bad.sum())} of {bad.size} shells (shells {shells}"
            f"{'...' if bad.sum() > 5 else ''}): from maps with NaN or infinite values, "
            "or values too large for their Fourier power"
        )
