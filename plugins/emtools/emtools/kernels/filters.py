"""Fourier-space filters, shifts, masks and in-plane rotations of images and volumes.

Conventions shared by the particle kernels: real-space arrays have their origin at index
``n // 2`` of each axis; volumes are indexed ``[z, y, x]`` and images ``[y, x]``; 2D
Fourier transforms use the unshifted ``rfft2`` layout of the *centred* image (see
``xp.centered_rfft2``), with frequencies in "index units" (cycles per box).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from . import xp as xpmod


def rfft_grid_2d(n: int, xp: ModuleType = np) -> tuple[Any, Any]:
    """Integer frequency coordinates ``(ky, kx)`` of an ``n × n`` rfft2 layout, float32."""
    ky = (xp.fft.fftfreq(n) * n).astype(xp.float32)[:, None]
    kx = xp.arange(n // 2 + 1, dtype=xp.float32)[None, :]
    return xp.broadcast_to(ky, (n, n // 2 + 1)), xp.broadcast_to(kx, (n, n // 2 + 1))


def radius_grid_3d(n: int, xp: ModuleType = np) -> Any:
    """Frequency radius (index units) of each voxel of an unshifted ``n³`` fftn layout."""
    k = (xp.fft.fftfreq(n) * n).astype(xp.float32)
    return xp.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)


def fourier_shift_2d(ft: Any, shifts: Any, xp: ModuleType | None = None) -> Any:
    """Move the content of images given as rfft2 ``ft`` ``(N, n, n//2+1)`` by ``shifts``.

    ``shifts`` is ``(N, 2)`` as (dx, dy) in pixels; +dx moves the content towards +x.
    RELION's rlnOrigin is the shift that *centres* a particle, so centring uses
    ``fourier_shift_2d(ft, +origin)`` and simulating uses ``-origin``.
    """
    xp = xp or xpmod.array_module(ft)
    n = ft.shape[-2]
    ky, kx = rfft_grid_2d(n, xp)
    s = xp.asarray(shifts, dtype=xp.float32).reshape(-1, 2)
    phase = (-2.0 * np.pi / n) * (kx[None] * s[:, 0, None, None] + ky[None] * s[:, 1, None, None])
    return ft * xp.exp(1j * phase).astype(xp.complex64)


def cosine_lowpass_3d(n: int, cutoff_px: float, edge_px: float = 2.0, xp: ModuleType = np) -> Any:
    """Low-pass transfer function on an unshifted fftn grid: 1 inside ``cutoff_px``,
    a raised-cosine fall-off of width ``edge_px`` beyond it (a hard edge rings)."""
    r = radius_grid_3d(n, xp)
    t = xp.clip((r - cutoff_px) / max(edge_px, 1e-6), 0.0, 1.0)
    return (0.5 * (1.0 + xp.cos(np.pi * t))).astype(xp.float32)


def resolution_to_radius(resolution_a: float, n: int, pixel_size_a: float) -> float:
    """Fourier shell radius (index units) that corresponds to a resolution in Å."""
    return n * pixel_size_a / resolution_a


def radius_to_resolution(radius_px: Any, n: int, pixel_size_a: float) -> Any:
    """Resolution in Å of a Fourier shell radius (index units); inf at the origin."""
    r = np.asarray(radius_px, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return n * pixel_size_a / r


def lowpass_volume(
    volume: Any, resolution_a: float, pixel_size_a: float, edge_px: float = 2.0, xp: ModuleType | None = None
) -> Any:
    """Low-pass a cubic volume to ``resolution_a`` with a soft cosine edge (float32)."""
    xp = xp or xpmod.array_module(volume)
    n = volume.shape[0]
    cutoff = resolution_to_radius(resolution_a, n, pixel_size_a)
    ft = xp.fft.fftn(xp.asarray(volume, dtype=xp.float32))
    out = xp.fft.ifftn(ft * cosine_lowpass_3d(n, cutoff, edge_px, xp)).real
    return out.astype(xp.float32)


def soft_spherical_mask(
    shape: tuple[int, ...], radius_px: float, edge_px: float = 3.0, xp: ModuleType = np
) -> Any:
    """Mask (2D or 3D) equal to 1 inside ``radius_px`` of the centre, cosine to 0 over
    ``edge_px``; soft because a hard mask adds spurious correlation at high resolution."""
    axes = [xp.arange(s, dtype=xp.float32) - s // 2 for s in shape]
    grids = xp.meshgrid(*axes, indexing="ij")
    r = xp.sqrt(sum(g * g for g in grids))
    t = xp.clip((r - radius_px) / max(edge_px, 1e-6), 0.0, 1.0)
    return (0.5 * (1.0 + xp.cos(np.pi * t))).astype(xp.float32)


def rotate_images(
    images: Any, angles_deg: Any, shifts: Any | None = None, xp: ModuleType | None = None
) -> Any:
    """Rotate images ``(N, n, n)`` counter-clockwise by ``angles_deg`` about the centre,
    then move them by ``shifts`` ``(N, 2)`` (dx, dy) pixels; bilinear, zero outside.

    One gather for the whole stack so that 2D alignment stays vectorised.
    """
    xp = xp or xpmod.array_module(images)
    imgs = xp.asarray(images, dtype=xp.float32)
    n_img, ny, nx = imgs.shape
    ang = xp.deg2rad(xp.asarray(angles_deg, dtype=xp.float32).reshape(-1))
    ang = xp.broadcast_to(ang, (n_img,))
    y = xp.arange(ny, dtype=xp.float32) - ny // 2
    x = xp.arange(nx, dtype=xp.float32) - nx // 2
    yy, xx = xp.meshgrid(y, x, indexing="ij")
    if shifts is not None:
        s = xp.asarray(shifts, dtype=xp.float32).reshape(-1, 2)
        xx = xx[None] - s[:, 0, None, None]
        yy = yy[None] - s[:, 1, None, None]
    else:
        xx, yy = xx[None], yy[None]
    c, si = xp.cos(ang)[:, None, None], xp.sin(ang)[:, None, None]
    # output pixel p samples the input at R(-angle) p
    src_x = c * xx + si * yy + nx // 2
    src_y = -si * xx + c * yy + ny // 2
    x0 = xp.floor(src_x)
    y0 = xp.floor(src_y)
    tx, ty = src_x - x0, src_y - y0
    x0 = x0.astype(xp.int64)
    y0 = y0.astype(xp.int64)
    flat = imgs.reshape(n_img, -1)
    base = (xp.arange(n_img) * (ny * nx))[:, None, None]
    out = xp.zeros_like(src_x)
    for dy, wy in ((0, 1.0 - ty), (1, ty)):
        for dx, wx in ((0, 1.0 - tx), (1, tx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < nx) & (yi >= 0) & (yi < ny)
            idx = base + xp.clip(yi, 0, ny - 1) * nx + xp.clip(xi, 0, nx - 1)
            out += xp.where(inside, flat.reshape(-1)[idx], 0.0) * wx * wy
    return out.astype(xp.float32)


def normalize_background(images: Any, radius_px: float, xp: ModuleType | None = None) -> Any:
    """Scale each image so its background (outside ``radius_px``) has mean 0 and std 1,
    as RELION's preprocessing does, so noise levels are comparable across particles."""
    xp = xp or xpmod.array_module(images)
    n = images.shape[-1]
    outside = soft_spherical_mask((n, n), radius_px, 0.0, xp) < 0.5
    bg = images[:, outside]
    mean = bg.mean(axis=1)[:, None, None]
    std = bg.std(axis=1)[:, None, None]
    return ((images - mean) / xp.maximum(std, 1e-12)).astype(xp.float32)
