"""Fourier-slice projection: central sections of a padded 3D Fourier transform.

The volume is padded ``pad`` times (2 by default) before its FFT so that trilinear
interpolation between Fourier voxels is accurate, and pre-divided by the real-space
apodisation that trilinear interpolation causes (``sinc²`` per axis), the gridding
correction RELION's projector also applies. Every call works on a whole batch of
orientations with one gather per interpolation corner, on NumPy or CuPy arrays.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from . import xp as xpmod
from .filters import fourier_shift_2d, rfft_grid_2d


class VolumeShapeError(ValueError):
    """The volume is not a cube of even edge, which the Fourier conventions assume."""


def trilinear_sinc2(n: int, padded: int, xp: ModuleType = np) -> Any:
    """Real-space apodisation of trilinear interpolation on a grid of ``padded`` voxels,
    evaluated on the centred ``n³`` box (separable ``sinc²(x / padded)``)."""
    x = (xp.arange(n, dtype=xp.float32) - n // 2) / padded
    s = xp.sinc(x) ** 2
    return s[:, None, None] * s[None, :, None] * s[None, None, :]


def check_cubic(volume: Any) -> int:
    """Edge length of a cubic, even-sized volume; raise :class:`VolumeShapeError` otherwise."""
    if volume.ndim != 3 or len(set(volume.shape)) != 1 or volume.shape[0] % 2:
        raise VolumeShapeError(f"expected a cubic volume of even edge, got shape {tuple(volume.shape)}")
    return int(volume.shape[0])


def trilinear_sample(grid_flat: Any, size: int, coords: Any, xp: ModuleType) -> Any:
    """Trilinear interpolation of a periodic ``size³`` grid (flattened, [z, y, x]) at
    ``coords`` ``(..., 3)`` given as (x, y, z) in voxel units of that grid."""
    f = xp.floor(coords)
    t = (coords - f).astype(xp.float32)
    i0 = f.astype(xp.int64) % size
    i1 = (i0 + 1) % size
    out = None
    for cz in (0, 1):
        iz = (i1 if cz else i0)[..., 2] * (size * size)
        wz = t[..., 2] if cz else 1.0 - t[..., 2]
        for cy in (0, 1):
            iy = (i1 if cy else i0)[..., 1] * size
            wy = t[..., 1] if cy else 1.0 - t[..., 1]
            for cx in (0, 1):
                ix = (i1 if cx else i0)[..., 0]
                wx = t[..., 0] if cx else 1.0 - t[..., 0]
                term = grid_flat[iz + iy + ix] * (wz * wy * wx)
                out = term if out is None else out + term
    return out


class FourierProjector:
    """A volume prepared for fast projection at many orientations.

    Build once per reference (the FFT of the padded volume dominates for few
    orientations), then call :meth:`project` / :meth:`slices` as often as needed.
    """

    def __init__(self, volume: Any, pad: int = 2, xp: ModuleType = np) -> None:
        self.xp = xp
        self.n = check_cubic(volume)
        self.pad = int(pad)
        self.size = self.n * self.pad
        vol = xp.asarray(volume, dtype=xp.float32) / trilinear_sinc2(self.n, self.size, xp)
        padded = xp.zeros((self.size,) * 3, dtype=xp.float32)
        o = self.size // 2 - self.n // 2
        padded[o : o + self.n, o : o + self.n, o : o + self.n] = vol
        self.ft_flat = xpmod.centered_fftn(padded, xp).astype(xp.complex64).reshape(-1)

    def slices(self, rotations: Any, kx: Any, ky: Any, batch_points: int = 2_000_000) -> Any:
        """Central-section values ``(N, M)`` at 2D frequencies ``(kx, ky)`` (index units
        of the unpadded box, 1D arrays of length M) for rotation matrices ``(N, 3, 3)``."""
        xp = self.xp
        rot = xp.asarray(rotations, dtype=xp.float32).reshape(-1, 3, 3)
        kx = xp.asarray(kx, dtype=xp.float32).reshape(-1)
        ky = xp.asarray(ky, dtype=xp.float32).reshape(-1)
        m = kx.shape[0]
        out = xp.empty((rot.shape[0], m), dtype=xp.complex64)
        step = max(1, batch_points // max(m, 1))
        for b in range(0, rot.shape[0], step):
            r = rot[b : b + step]
            # point = Aᵀ (kx, ky, 0) = kx * A[0, :] + ky * A[1, :]
            coords = kx[None, :, None] * r[:, None, 0, :] + ky[None, :, None] * r[:, None, 1, :]
            out[b : b + step] = trilinear_sample(self.ft_flat, self.size, coords * self.pad, xp)
        return out

    def project_ft(self, rotations: Any, max_radius: float | None = None) -> Any:
        """Projections as centred rfft2 arrays ``(N, n, n//2+1)`` complex64, zero beyond
        ``max_radius`` (index units; Nyquist ``n/2`` by default)."""
        xp = self.xp
        n = self.n
        ky, kx = rfft_grid_2d(n, xp)
        r_lim = n / 2 if max_radius is None else max_radius
        inside = (kx * kx + ky * ky) <= r_lim * r_lim
        rot = xp.asarray(rotations).reshape(-1, 3, 3)
        out = xp.zeros((rot.shape[0], n, n // 2 + 1), dtype=xp.complex64)
        out[:, inside] = self.slices(rot, kx[inside], ky[inside])
        return out

    def project(self, rotations: Any, shifts: Any | None = None) -> Any:
        """Real-space projections ``(N, n, n)`` float32.

        ``shifts`` ``(N, 2)`` (dx, dy) moves each projection's content by that many
        pixels (+dx towards +x). A particle with RELION origin ``o`` is ``shifts = -o``.
        """
        ft = self.project_ft(rotations)
        if shifts is not None:
            ft = fourier_shift_2d(ft, shifts, self.xp)
        return xpmod.centered_irfft2(ft, (self.n, self.n), self.xp).astype(self.xp.float32)


def project(volume: Any, rotations: Any, shifts: Any | None = None, xp: ModuleType = np, pad: int = 2) -> Any:
    """Project ``volume`` at rotation matrices ``(N, 3, 3)``; see :meth:`FourierProjector.project`."""
    return FourierProjector(volume, pad=pad, xp=xp).project(rotations, shifts)
