"""How well a micrograph's fitted CTF matches its power spectrum, drawn from the micrograph.

CTF estimation stores the fit (defocus U/V, angle, resolution, score), not the spectrum it
was fitted to, so the spectrum is computed again here with the emtools kernels that fitted
it (the same tiles, background removal and astigmatism correction) and cached by the pages
with the micrograph's fingerprint. Two views: the 1D profile (rotational average against
CTF², :func:`ctf_profile`) and the 2D spectrum beside the model (:func:`spectrum_png`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.web.thumbnails import shrink, stretch_limits, to_png

#: where the local agreement ends the fit (emtools' ctffind default)
THRESHOLD = 0.3
#: blur of the spectrum in the 2D view (px): single pixels of a spectrum are mostly noise
SPECTRUM_BLUR_PX = 1.2


class CtfViewError(OrchestratorError):
    """The CTF of a micrograph cannot be drawn (no emtools, no acquisition, no fit)."""


@dataclass(frozen=True)
class CtfFitInput:
    """A micrograph's fitted CTF and the microscope it was taken with."""

    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float
    pixel_size_a: float
    defocus_u_a: float
    defocus_v_a: float
    defocus_angle_deg: float
    tile_size: int = 256
    min_resolution_a: float = 30.0

    @classmethod
    def of(cls, acquisition: Mapping[str, Any], item: Mapping[str, Any], settings: Mapping[str, Any]) -> CtfFitInput:
        """From a set's acquisition, a micrograph's row and the CTF run's params (tile, band)."""
        if not acquisition or not acquisition.get("pixel_size_a"):
            raise CtfViewError("the micrographs' set has no acquisition (voltage, Cs, pixel size)")
        if not item.get("has_ctf", True) or not item.get("defocus_u"):
            raise CtfViewError(f"micrograph {item.get('id')} has no CTF fit")
        return cls(float(acquisition["voltage_kv"]), float(acquisition["cs_mm"]),
                   float(acquisition["amplitude_contrast"]), float(acquisition["pixel_size_a"]),
                   float(item["defocus_u"]), float(item["defocus_v"]), float(item["defocus_angle"]),
                   int(settings.get("tile_size") or 256), float(settings.get("min_resolution") or 30.0))

    def describe(self) -> str:
        """Cache key part: the fit and what the spectrum depends on."""
        return (f"ctf:{self.voltage_kv}:{self.cs_mm}:{self.amplitude_contrast}:{self.pixel_size_a}:"
                f"{self.defocus_u_a:.2f}:{self.defocus_v_a:.2f}:{self.defocus_angle_deg:.2f}:{self.tile_size}:"
                f"{self.min_resolution_a}")


def _kernels() -> tuple[Any, Any]:
    """The emtools kernel modules (a plugin: the web interface runs without it)."""
    try:
        ctf = importlib.import_module("emtools.kernels.ctf")
        ctffind = importlib.import_module("emtools.kernels.ctffind")
    except ImportError:
        raise CtfViewError("drawing a CTF fit needs the emtools plugin (pip install its package)") from None
    return ctf, ctffind


def _spectrum(image: np.ndarray, fit: CtfFitInput) -> tuple[np.ndarray, Any, float, Any]:
    """Background-subtracted amplitude spectrum (unshifted, tile × tile), CtfParams, the band's
    lowest frequency and the ctffind kernel module."""
    ctf, ctffind = _kernels()
    tile = min(fit.tile_size, min(image.shape) // 2 * 2)
    if tile < 32:
        raise UsageError(f"the micrograph ({image.shape[1]}x{image.shape[0]}) is too small for a spectrum")
    params = ctf.CtfParams(fit.voltage_kv, fit.cs_mm, fit.amplitude_contrast, fit.pixel_size_a,
                           fit.defocus_u_a, fit.defocus_v_a, fit.defocus_angle_deg)
    amplitude = np.sqrt(ctffind.tile_power_spectrum(image, tile))
    s_min = 1.0 / fit.min_resolution_a
    spectrum = ctffind.subtract_background(amplitude, s_min * tile * fit.pixel_size_a, max(5, tile // 16))
    return spectrum, params, s_min, ctffind


def ctf_profile(image: np.ndarray, fit: CtfFitInput) -> dict[str, Any]:
    """The rotational average of the spectrum and of CTF² along astigmatism-corrected frequency
    (rings of equal phase averaged together), the spectrum scaled to the model by least squares,
    and the local agreement the fit's resolution comes from."""
    spectrum, params, s_min, ctffind = _spectrum(image, fit)
    ctf_module, _ = _kernels()
    n, px = spectrum.shape[0], fit.pixel_size_a
    fy = np.fft.fftfreq(n)[:, None] / px
    fx = np.fft.rfftfreq(n)[None, :] / px
    s = np.sqrt(fy * fy + fx * fx)
    theta = np.arctan2(fy, fx)
    mean = params.defocus_mean_a
    local_defocus = mean + 0.5 * (params.defocus_u_a - params.defocus_v_a) * np.cos(
        2 * (theta - np.deg2rad(params.defocus_angle_deg)))
    s_equal = s * np.sqrt(np.clip(local_defocus, 1.0, None) / mean)
    bins = np.rint(s_equal * n * px).astype(np.int64).ravel()
    counts = np.maximum(np.bincount(bins), 1)
    data = np.bincount(bins, spectrum[:, : n // 2 + 1].astype(np.float64).ravel()) / counts
    model = np.bincount(bins, (ctf_module.ctf_2d(params, (n, n)).astype(np.float64) ** 2).ravel()) / counts
    freqs = np.arange(data.size) / (n * px)
    keep = (freqs >= s_min) & (freqs <= 0.5 / px)
    if keep.sum() < 4:
        raise UsageError("the fitting band holds too few frequencies to draw")
    slope, offset = np.polyfit(data[keep], model[keep], 1)
    local_freqs, local_cc = ctffind.fit_resolution_curve(spectrum, params, s_min)
    local = np.interp(freqs[keep], local_freqs, np.nan_to_num(local_cc, nan=0.0))
    resolution = ctffind.fit_resolution(local_freqs, local_cc, params, THRESHOLD)
    return {"frequency": freqs[keep].tolist(), "spectrum": (slope * data[keep] + offset).tolist(),
            "model": model[keep].tolist(), "local_cc": local.tolist(), "s_min": s_min, "threshold": THRESHOLD,
            "resolution_a": float(resolution) if np.isfinite(resolution) else None}


def spectrum_png(image: np.ndarray, fit: CtfFitInput, size: int) -> bytes:
    """The spectrum (left half) beside the fitted CTF² (right half), centred, as CTFFIND shows
    it: rings that continue across the middle mean a good fit."""
    spectrum, params, s_min, _ = _spectrum(image, fit)
    ctf_module, _ = _kernels()
    n = spectrum.shape[0]
    from scipy.ndimage import gaussian_filter

    data = gaussian_filter(np.fft.fftshift(spectrum).astype(np.float32), SPECTRUM_BLUR_PX)
    model = np.fft.fftshift(ctf_module.ctf_2d(params, (n, n), half=False).astype(np.float32) ** 2)
    radius = np.hypot(*np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij"))
    outside = radius >= s_min * n * fit.pixel_size_a
    low, high = stretch_limits(data[outside])
    scaled = np.clip((data - low) / (high - low), 0, 1) if high > low else np.zeros_like(data)
    picture = np.where(np.arange(n)[None, :] < n // 2, scaled, model).astype(np.float32)
    picture[~outside] = 0.5
    return to_png(shrink(picture, size), (0.0, 1.0))
