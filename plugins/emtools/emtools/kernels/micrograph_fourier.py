"""Fourier-space helpers shared by the micrograph kernels (movies, motion, extraction).

Micrographs and movie frames are rectangular ``(ny, nx)`` images with their origin at
pixel ``[0, 0]`` (unlike particle boxes, whose origin is the box centre), so these work
on the plain ``rfft2`` layout. Shifts are ``(dx, dy)`` in pixels and a positive ``dx``
moves the content towards +x, as in ``filters.fourier_shift_2d``.

The exposure filter is Grant & Grigorieff (2015, eLife 4:e06980): the signal at spatial
frequency ``s`` decays as ``exp(-N / (2 Ne(s)))`` with accumulated exposure ``N`` and the
critical exposure ``Ne(s) = 0.245 s^-1.665 + 2.81`` e/Å² (``s`` in 1/Å), fitted at 300 kV.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from . import xp as xpmod

# Grant & Grigorieff (2015) fit of the critical exposure at 300 kV.
CRITICAL_EXPOSURE_A = 0.245
CRITICAL_EXPOSURE_B = -1.665
CRITICAL_EXPOSURE_C = 2.81


def frequency_grid(shape: tuple[int, int], pixel_size_a: float = 1.0, xp: ModuleType = np) -> tuple[Any, Any]:
    """Frequencies ``(fy, fx)`` in 1/Å of the unshifted rfft2 layout of a ``(ny, nx)`` image.

    Returned as broadcastable ``(ny, 1)`` and ``(1, nx // 2 + 1)`` float32 arrays so callers
    build only the grids they need; with ``pixel_size_a=1`` they are cycles per pixel.
    """
    ny, nx = shape
    fy = (xp.fft.fftfreq(ny) / pixel_size_a).astype(xp.float32)[:, None]
    fx = (xp.fft.rfftfreq(nx) / pixel_size_a).astype(xp.float32)[None, :]
    return fy, fx


def shift_rfft2(ft: Any, shifts: Any, shape: tuple[int, int], xp: ModuleType | None = None) -> Any:
    """Sub-pixel shift of images given as rfft2 ``ft`` ``(..., ny, nx//2+1)``.

    ``shifts`` is ``(2,)`` or ``(N, 2)`` as (dx, dy) pixels, one row per leading image.
    A phase ramp is an exact, periodic shift: content leaving one edge re-enters at the
    other, which is what a whole-frame drift of a periodic simulation needs.
    """
    xp = xp or xpmod.array_module(ft)
    fy, fx = frequency_grid(shape, 1.0, xp)
    s = xp.asarray(shifts, dtype=xp.float32)
    if s.ndim == 1:
        phase = fx * s[0] + fy * s[1]
    else:
        phase = fx[None] * s[:, 0, None, None] + fy[None] * s[:, 1, None, None]
    return ft * xp.exp((-2j * np.pi) * phase).astype(xp.complex64)


def shift_images(images: Any, shifts: Any, xp: ModuleType | None = None) -> Any:
    """Shift real images ``(ny, nx)`` or ``(N, ny, nx)`` by ``shifts`` (dx, dy) px, float32."""
    xp = xp or xpmod.array_module(images)
    a = xp.asarray(images, dtype=xp.float32)
    shape = a.shape[-2:]
    ft = shift_rfft2(xp.fft.rfft2(a), shifts, shape, xp)
    return xp.fft.irfft2(ft, s=shape).astype(xp.float32)


def crop_rfft2(ft: Any, size: tuple[int, int]) -> Any:
    """Keep the low frequencies of an rfft2 stack ``(..., ny, nx//2+1)`` for a smaller
    real-space ``size``: the rfft2 of the Fourier-binned image (unnormalised: multiply
    the inverse by ``(size / original)²`` to keep pixel values)."""
    ny, nx = size
    ky = ny // 2
    xp = xpmod.array_module(ft)
    top = ft[..., :ky, : nx // 2 + 1]
    bottom = ft[..., ft.shape[-2] - (ny - ky) :, : nx // 2 + 1]
    return xp.concatenate([top, bottom], axis=-2)


def exposure_voltage_factor(voltage_kv: float) -> float:
    """Scale of the critical exposure relative to 300 kV.

    Grant & Grigorieff measured at 300 kV; at 200 kV damage per e/Å² is higher and the
    usual correction (MotionCor2, RELION) multiplies ``Ne`` by 0.8. Between the two we
    interpolate linearly and we clamp outside, since no measurement supports more.
    """
    return float(np.interp(voltage_kv, [200.0, 300.0], [0.8, 1.0]))


def critical_exposure(s: Any, voltage_kv: float = 300.0, xp: ModuleType = np) -> Any:
    """Critical exposure ``Ne(s)`` in e/Å² at spatial frequency ``s`` (1/Å); inf at ``s = 0``."""
    s = xp.asarray(s, dtype=xp.float32)
    safe = xp.where(s > 0, s, 1.0)
    ne = CRITICAL_EXPOSURE_A * safe**CRITICAL_EXPOSURE_B + CRITICAL_EXPOSURE_C
    ne = ne * exposure_voltage_factor(voltage_kv)
    return xp.where(s > 0, ne, xp.inf).astype(xp.float32)


def exposure_filter(
    shape: tuple[int, int],
    pixel_size_a: float,
    exposures: Any,
    voltage_kv: float = 300.0,
    xp: ModuleType = np,
) -> Any:
    """Signal attenuation ``exp(-N / (2 Ne(s)))`` on the rfft2 grid for each exposure ``N``.

    ``exposures`` (e/Å², one per frame) gives a ``(n_frames, ny, nx//2+1)`` float32 stack.
    """
    fy, fx = frequency_grid(shape, pixel_size_a, xp)
    ne = critical_exposure(xp.sqrt(fy * fy + fx * fx), voltage_kv, xp)
    n = xp.asarray(exposures, dtype=xp.float32).reshape(-1, 1, 1)
    return xp.exp(-n / (2.0 * ne[None])).astype(xp.float32)
