"""Array-module switch: NumPy on the CPU, CuPy on a GPU when a step is given one.

The heavy kernels (projection, back-projection, correlation) take an ``xp`` argument
and only call functions that NumPy and CuPy share, so the same code runs on either.
CuPy is optional: asking for a GPU where CuPy is missing falls back to NumPy, because a
step scheduled on a GPU host must still produce its result when the driver stack is
absent (it will only be slower). Use :func:`require_gpu` where silently falling back
would be wrong.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


class GpuUnavailableError(RuntimeError):
    """A GPU array module was required but CuPy cannot be imported or has no device."""


def _import_cupy() -> ModuleType | None:
    try:
        import cupy  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        # Importing succeeds on machines without a driver; only a device query tells.
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # noqa: BLE001 - CuPy raises several driver-specific error types
        return None
    return cupy


def gpu_available() -> bool:
    """Whether CuPy is importable and sees at least one CUDA device."""
    return _import_cupy() is not None


def get_xp(use_gpu: bool = False) -> ModuleType:
    """Return ``cupy`` when ``use_gpu`` and CuPy works here, else ``numpy``."""
    if use_gpu:
        cupy = _import_cupy()
        if cupy is not None:
            return cupy
    return np


def require_gpu() -> ModuleType:
    """Return ``cupy`` or raise :class:`GpuUnavailableError` saying why it cannot be used."""
    cupy = _import_cupy()
    if cupy is None:
        raise GpuUnavailableError(
            "CuPy is not installed or sees no CUDA device; install cupy-cudaXXx matching "
            "the driver, or run the step without use_gpu"
        )
    return cupy


def array_module(*arrays: Any) -> ModuleType:
    """The module (numpy or cupy) that owns the given arrays; numpy for plain inputs."""
    for a in arrays:
        mod = type(a).__module__
        if mod.startswith("cupy"):
            return get_xp(True)
    return np


def to_numpy(a: Any) -> np.ndarray:
    """Copy a CuPy array to the host; NumPy arrays and scalars pass through unchanged."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def to_xp(a: Any, xp: ModuleType) -> Any:
    """Move an array onto the device of ``xp`` (no copy when it is already there)."""
    if xp is np:
        return to_numpy(a)
    return xp.asarray(a)


# --- FFT helpers -------------------------------------------------------------------------
# Routed through the array module so callers never import numpy.fft directly. Real-space
# arrays in this package have their origin at the box centre (index n // 2); the
# ``centered_*`` helpers move that origin to index 0 before transforming so that Fourier
# phases describe positions relative to the centre, which is what projection and
# reconstruction need.


def rfft2(a: Any, xp: ModuleType | None = None) -> Any:
    """Real 2D FFT over the last two axes."""
    xp = xp or array_module(a)
    return xp.fft.rfft2(a, axes=(-2, -1))


def irfft2(a: Any, shape: tuple[int, int], xp: ModuleType | None = None) -> Any:
    """Inverse of :func:`rfft2`; ``shape`` is the real-space (ny, nx)."""
    xp = xp or array_module(a)
    return xp.fft.irfft2(a, s=shape, axes=(-2, -1))


def centered_rfft2(images: Any, xp: ModuleType | None = None) -> Any:
    """rfft2 of images whose origin is at the box centre (ifftshift first)."""
    xp = xp or array_module(images)
    return xp.fft.rfft2(xp.fft.ifftshift(images, axes=(-2, -1)), axes=(-2, -1))


def centered_irfft2(ft: Any, shape: tuple[int, int], xp: ModuleType | None = None) -> Any:
    """Inverse of :func:`centered_rfft2`."""
    xp = xp or array_module(ft)
    return xp.fft.fftshift(xp.fft.irfft2(ft, s=shape, axes=(-2, -1)), axes=(-2, -1))


def centered_fftn(volume: Any, xp: ModuleType | None = None) -> Any:
    """Full n-D FFT of an array whose origin is at the box centre."""
    xp = xp or array_module(volume)
    return xp.fft.fftn(xp.fft.ifftshift(volume))


def centered_ifftn(ft: Any, xp: ModuleType | None = None) -> Any:
    """Inverse of :func:`centered_fftn` (complex result; take ``.real`` for real data)."""
    xp = xp or array_module(ft)
    return xp.fft.fftshift(xp.fft.ifftn(ft))


def fft_freqs_2d(shape: tuple[int, int], half: bool = True, xp: ModuleType = np) -> tuple[Any, Any]:
    """Frequency grids (fy, fx) in cycles/pixel for an rfft2 (``half``) or fft2 layout."""
    ny, nx = shape
    fy = xp.fft.fftfreq(ny)[:, None]
    fx = (xp.fft.rfftfreq(nx) if half else xp.fft.fftfreq(nx))[None, :]
    return xp.broadcast_to(fy, (ny, fx.shape[1])), xp.broadcast_to(fx, (ny, fx.shape[1]))
