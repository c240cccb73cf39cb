"""Direct Fourier inversion from particles with known orientations.

Each particle's Fourier transform, centred with its origin and multiplied by its CTF, is
spread onto a 2×-padded 3D grid with trilinear weights at ``Aᵀ (kx, ky, 0)``; the same
weights accumulate ``CTF²``. The map is ``Σ CTF·X / (Σ CTF² + λ(r))``, a Wiener-like
division with ``λ(r)`` a fraction of the mean weight of each Fourier shell (a constant
would over-regularise the sparsely sampled high shells relative to the dense low ones).
The real-space result is divided by the trilinear gridding kernel and cropped.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from . import xp as xpmod
from .ctf import CtfParams, ctf_2d_stack
from .filters import fourier_shift_2d, rfft_grid_2d
from .projection import trilinear_sinc2


class FourierAccumulator:
    """Running sums ``Σ CTF·X`` and ``Σ CTF²`` on a padded 3D Fourier grid."""

    def __init__(self, n: int, pad: int = 2, xp: ModuleType = np, max_radius: float | None = None) -> None:
        self.xp = xp
        self.n = n
        self.pad = pad
        self.size = n * pad
        self.max_radius = n / 2 if max_radius is None else max_radius
        self.data = xp.zeros(self.size**3, dtype=xp.complex128)
        self.weight = xp.zeros(self.size**3, dtype=xp.float64)
        ky, kx = rfft_grid_2d(n, xp)
        r2 = kx * kx + ky * ky
        # kx == 0, ky < 0 are the Hermitian mates of kx == 0, ky > 0: insert them once
        keep = (r2 <= self.max_radius**2) & ~((kx == 0) & (ky < 0))
        self._keep = keep
        self._kx, self._ky = kx[keep], ky[keep]

    def insert(self, images_ft: Any, ctfs: Any | None, rotations: Any, batch: int = 256) -> None:
        """Add particles given as centred, already origin-corrected rfft2 arrays
        ``(N, n, n//2+1)`` with CTFs of the same shape (``None``: no CTF)."""
        xp = self.xp
        rot = xp.asarray(rotations, dtype=xp.float32).reshape(-1, 3, 3)
        for b in range(0, rot.shape[0], batch):
            f = xp.asarray(images_ft[b : b + batch])[:, self._keep]
            if ctfs is None:
                c2 = xp.ones(f.shape, dtype=xp.float32)
            else:
                c = xp.asarray(ctfs[b : b + batch])[:, self._keep]
                f = f * c
                c2 = c * c
            r = rot[b : b + batch]
            coords = self.pad * (
                self._kx[None, :, None] * r[:, None, 0, :] + self._ky[None, :, None] * r[:, None, 1, :]
            )
            self._splat(coords.reshape(-1, 3), f.reshape(-1), c2.reshape(-1))

    def _splat(self, coords: Any, values: Any, weights: Any) -> None:
        xp = self.xp
        size = self.size
        fl = xp.floor(coords)
        t = (coords - fl).astype(xp.float32)
        i0 = fl.astype(xp.int64) % size
        i1 = (i0 + 1) % size
        nbin = size**3
        for cz in (0, 1):
            iz = (i1 if cz else i0)[:, 2] * (size * size)
            wz = t[:, 2] if cz else 1.0 - t[:, 2]
            for cy in (0, 1):
                iy = (i1 if cy else i0)[:, 1] * size
                wy = t[:, 1] if cy else 1.0 - t[:, 1]
                for cx in (0, 1):
                    ix = (i1 if cx else i0)[:, 0]
                    w = wz * wy * (t[:, 0] if cx else 1.0 - t[:, 0])
                    idx = iz + iy + ix
                    self.data += xp.bincount(idx, weights=w * values.real, minlength=nbin)
                    self.data += 1j * xp.bincount(idx, weights=w * values.imag, minlength=nbin)
                    self.weight += xp.bincount(idx, weights=w * weights, minlength=nbin)

    def volume(self, regularisation: float = 0.01, gridding_correction: bool = True) -> Any:
        """The reconstructed ``n³`` float32 volume (see module docstring for ``λ``)."""
        xp = self.xp
        s = self.size
        data = self.data.reshape(s, s, s)
        weight = self.weight.reshape(s, s, s)
        # Hermitian completion: the value at -k is the conjugate of the one at k
        mate = (-xp.arange(s)) % s
        data = data + xp.conj(data[mate][:, mate][:, :, mate])
        weight = weight + weight[mate][:, mate][:, :, mate]
        k = (xp.fft.fftfreq(s) * s).astype(xp.float32)
        r = xp.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
        shell = xp.rint(r).astype(xp.int64).reshape(-1)
        sums = xp.bincount(shell, weights=weight.reshape(-1))
        counts = xp.maximum(xp.bincount(shell), 1)
        lam = (regularisation * sums / counts)[shell].reshape(s, s, s)
        inside = r <= self.max_radius * self.pad
        ft = xp.where(inside, data / (weight + lam + 1e-30), 0.0)
        vol = xpmod.centered_ifftn(ft, xp).real
        o = s // 2 - self.n // 2
        vol = vol[o : o + self.n, o : o + self.n, o : o + self.n]
        if gridding_correction:
            vol = vol / trilinear_sinc2(self.n, s, xp)
        return vol.astype(xp.float32)


def prepare_particles(
    images: Any,
    origins: Any,
    optics: CtfParams | None,
    defocus_u: Any = None,
    defocus_v: Any = None,
    defocus_angle: Any = None,
    xp: ModuleType = np,
) -> tuple[Any, Any | None]:
    """Centred, origin-corrected rfft2 of ``images`` and their CTFs (``None`` without optics)."""
    imgs = xp.asarray(images, dtype=xp.float32)
    n = imgs.shape[-1]
    ft = fourier_shift_2d(xpmod.centered_rfft2(imgs, xp), xp.asarray(origins), xp)
    if optics is None:
        return ft, None
    return ft, ctf_2d_stack(optics, defocus_u, defocus_v, defocus_angle, (n, n), xp=xp)


def reconstruct(
    images_ft: Any,
    ctfs: Any | None,
    rotations: Any,
    pad: int = 2,
    regularisation: float = 0.01,
    max_radius: float | None = None,
    xp: ModuleType = np,
) -> Any:
    """Reconstruct one map from prepared particles (see :func:`prepare_particles`)."""
    acc = FourierAccumulator(images_ft.shape[-2], pad=pad, xp=xp, max_radius=max_radius)
    acc.insert(images_ft, ctfs, rotations)
    return acc.volume(regularisation)


def reconstruct_halves(
    images_ft: Any,
    ctfs: Any | None,
    rotations: Any,
    half: np.ndarray,
    pad: int = 2,
    regularisation: float = 0.01,
    max_radius: float | None = None,
    xp: ModuleType = np,
) -> tuple[Any, Any]:
    """Two independent maps from the particles with ``half == 0`` and ``half == 1``
    (gold-standard FSC needs halves that never see each other's particles)."""
    out = []
    for h in (0, 1):
        sel = np.flatnonzero(np.asarray(half) == h)
        sel_x = xp.asarray(sel)
        out.append(
            reconstruct(
                images_ft[sel_x],
                None if ctfs is None else ctfs[sel_x],
                np.asarray(xpmod.to_numpy(rotations))[sel],
                pad=pad,
                regularisation=regularisation,
                max_radius=max_radius,
                xp=xp,
            )
        )
    return out[0], out[1]
