"""CTF estimation of a micrograph (CTFFIND-like), using the conventions of ``ctf.py``.

Steps, each a public function so that they can be tested and reused:

1. :func:`tile_power_spectrum`: Welch average of the power spectra of overlapping tiles
   (mean-subtracted); its square root, the amplitude spectrum, is what is fitted, as in
   CTFFIND4 (it compresses the dynamic range between low and high frequencies).
2. :func:`subtract_background`: remove the smooth part of the spectrum with a box filter
   wider than a Thon ring, leaving rings that oscillate around zero.
3. :func:`initial_defocus`: grid search of one defocus on the rotational average: the
   model ``CTF²`` whose zeros line up with the minima of the profile wins.
4. :func:`estimate_ctf`: coarse 2D grid over astigmatism, then Nelder-Mead on
   ``(mean, a, b)`` with ``Δf(θ) = mean + a cos 2θ + b sin 2θ``: linear in the parameters
   and free of the angle's wrap-around and of its degeneracy at zero astigmatism. The
   score is the normalised cross-correlation (NCC) between ``CTF²`` and the spectrum over
   the frequencies of the fitting band.
5. :func:`fit_resolution`: where the fit stops agreeing, from a local NCC over about one
   Thon ring at a time, along frequencies corrected for astigmatism.

Reported defocus follows CTFFIND/RELION: positive = underfocus, ``defocus_u >= defocus_v``,
angle of the U axis from the x axis in [0, 180) degrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import xp as xpmod
from .ctf import CtfParams, ctf_2d, ctf_2d_stack, electron_wavelength_a


class CtfEstimationError(ValueError):
    """A micrograph or band that cannot give a CTF fit (too small, empty band, ...)."""


@dataclass
class CtfFit:
    """Result of :func:`estimate_ctf`."""

    params: CtfParams  # the optics given, with the fitted defocus
    cc: float  # NCC between CTF² and the background-subtracted spectrum in the band
    resolution_a: float  # fit resolution: where the local NCC drops below the threshold
    frequencies: np.ndarray  # (K,) 1/Å, astigmatism-corrected frequency of each bin
    local_cc: np.ndarray  # (K,) local NCC at those frequencies (nan where undefined)

    @property
    def defocus_u_a(self) -> float:
        return self.params.defocus_u_a

    @property
    def defocus_v_a(self) -> float:
        return self.params.defocus_v_a

    @property
    def defocus_angle_deg(self) -> float:
        return self.params.defocus_angle_deg


def tile_power_spectrum(
    micrograph: Any, tile_size: int = 512, overlap: float = 0.5, xp: ModuleType = np
) -> np.ndarray:
    """Mean power spectrum ``(tile, tile)`` of overlapping tiles, unshifted fft2 layout.

    Tiles step by ``tile_size · (1 - overlap)``; one row of tiles is one batched FFT.
    """
    img = xp.asarray(micrograph, dtype=xp.float32)
    ny, nx = img.shape
    if tile_size > min(ny, nx):
        raise CtfEstimationError(f"tile_size {tile_size} is larger than the micrograph {img.shape}")
    step = max(1, int(round(tile_size * (1.0 - overlap))))
    ys = range(0, ny - tile_size + 1, step)
    xs = range(0, nx - tile_size + 1, step)
    total = xp.zeros((tile_size, tile_size), dtype=xp.float64)
    count = 0
    for y0 in ys:
        row = xp.stack([img[y0 : y0 + tile_size, x0 : x0 + tile_size] for x0 in xs])
        row = row - row.mean(axis=(1, 2), keepdims=True)
        ft = xp.fft.fft2(row)
        total += (ft.real**2 + ft.imag**2).sum(axis=0)
        count += row.shape[0]
    return xpmod.to_numpy(total / count).astype(np.float32)


def _radius_index(n: int) -> np.ndarray:
    """Radius in index units of each pixel of an unshifted ``n × n`` fft2 layout."""
    k = np.fft.fftfreq(n) * n
    return np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)


def subtract_background(amplitude: np.ndarray, min_radius_px: float, box_px: int) -> np.ndarray:
    """Amplitude spectrum minus its box-filtered (``box_px``) version, unshifted layout.

    Inside ``min_radius_px`` the spectrum is first replaced by its mean just outside
    that radius, so that the strong origin does not leak into the background estimate.
    """
    r = _radius_index(amplitude.shape[0])
    a = amplitude.astype(np.float64).copy()
    ring = (r >= min_radius_px) & (r < min_radius_px + 2.0)
    a[r < min_radius_px] = a[ring].mean()
    from scipy.ndimage import uniform_filter  # here: see emtools/kernels/__init__.py

    return (a - uniform_filter(a, size=box_px, mode="wrap")).astype(np.float32)


def _ncc(model: np.ndarray, data: np.ndarray, axis: int = -1) -> np.ndarray:
    m = model - model.mean(axis=axis, keepdims=True)
    d = data - data.mean(axis=axis, keepdims=True)
    denom = np.sqrt((m * m).sum(axis=axis) * (d * d).sum(axis=axis))
    return (m * d).sum(axis=axis) / np.maximum(denom, 1e-30)


def initial_defocus(
    spectrum: np.ndarray,
    optics: CtfParams,
    s_band: tuple[float, float],
    defocus_range_a: tuple[float, float] = (3000.0, 50000.0),
    step_a: float = 100.0,
) -> tuple[float, float]:
    """Best single defocus (Å) and its NCC on the rotational average of ``spectrum``.

    The rotational average of an astigmatic spectrum has its minima near the zeros of
    the mean defocus, which is what this estimates.
    """
    n = spectrum.shape[0]
    r = _radius_index(n)
    bins = np.rint(r).astype(np.int64)
    profile = np.bincount(bins.ravel(), spectrum.ravel()) / np.maximum(np.bincount(bins.ravel()), 1)
    s = np.arange(profile.size) / (n * optics.pixel_size_a)
    sel = (s >= s_band[0]) & (s <= s_band[1])
    defoci = np.arange(defocus_range_a[0], defocus_range_a[1] + step_a / 2, step_a)
    lam = electron_wavelength_a(optics.voltage_kv)
    w = optics.amplitude_contrast
    s2 = s[sel] ** 2
    gamma = (
        np.pi * lam * defoci[:, None] * s2[None]
        - 0.5 * np.pi * optics.cs_mm * 1e7 * lam**3 * s2[None] ** 2
        + np.deg2rad(optics.phase_shift_deg)
        + np.arctan(w / np.sqrt(1.0 - w * w))
    )
    scores = _ncc(np.sin(gamma) ** 2, profile[sel][None])
    best = int(np.argmax(scores))
    return float(defoci[best]), float(scores[best])


def _to_u_v_angle(mean: float, a: float, b: float) -> tuple[float, float, float]:
    """(mean, a, b) -> (U >= V, angle of U in [0, 180))."""
    half = float(np.hypot(a, b))
    angle = 0.5 * np.rad2deg(np.arctan2(b, a)) % 180.0
    return mean + half, mean - half, angle


def estimate_ctf(
    micrograph: Any,
    optics: CtfParams,
    tile_size: int = 512,
    min_resolution_a: float = 30.0,
    max_resolution_a: float = 5.0,
    defocus_range_a: tuple[float, float] = (3000.0, 50000.0),
    max_astigmatism_a: float = 3000.0,
    box_px: int | None = None,
    resolution_threshold: float = 0.3,
    xp: ModuleType = np,
) -> CtfFit:
    """Fit defocus U/V and astigmatism angle of ``micrograph`` (see the module docstring).

    ``optics`` supplies voltage, Cs, amplitude contrast, phase shift and pixel size; its
    defocus is ignored. The band ``[min_resolution_a, max_resolution_a]`` is clamped at
    Nyquist. ``box_px`` (background filter) defaults to ``tile_size / 16``. Only the tile
    FFTs run on ``xp``; the fit itself is small and stays on the CPU.
    """
    px = optics.pixel_size_a
    s_max = min(1.0 / max_resolution_a, 0.95 / (2.0 * px))
    s_min = 1.0 / min_resolution_a
    if s_min >= s_max:
        raise CtfEstimationError(f"empty fitting band {min_resolution_a}-{max_resolution_a} Å at {px} Å/px")
    amplitude = np.sqrt(tile_power_spectrum(micrograph, tile_size, xp=xp))
    n = amplitude.shape[0]
    spectrum = subtract_background(amplitude, s_min * n * px, box_px or max(5, n // 16))

    d0, _ = initial_defocus(spectrum, optics, (s_min, s_max), defocus_range_a)
    half = spectrum[:, : n // 2 + 1]
    s_grid = _radius_index(n)[:, : n // 2 + 1] / (n * px)
    band = (s_grid >= s_min) & (s_grid <= s_max)
    data = half[band].astype(np.float64)

    # coarse grid over astigmatism around the 1D estimate (the simplex then refines the mean)
    astig, angles = np.meshgrid(
        np.linspace(0.0, max_astigmatism_a, 5)[1:], np.arange(0.0, 180.0, 15.0), indexing="ij"
    )
    du = np.concatenate([[d0], (d0 + astig / 2).ravel()])
    dv = np.concatenate([[d0], (d0 - astig / 2).ravel()])
    da = np.concatenate([[0.0], angles.ravel()])
    models = ctf_2d_stack(optics, du, dv, da, (n, n))[:, band].astype(np.float64) ** 2
    scores = _ncc(models, data[None])
    best = int(np.argmax(scores))
    mean0 = 0.5 * (du[best] + dv[best])
    half0 = 0.5 * (du[best] - dv[best])
    ang0 = np.deg2rad(da[best])
    start = np.array([mean0, half0 * np.cos(2 * ang0), half0 * np.sin(2 * ang0)]) / 1000.0

    def score(p: np.ndarray) -> float:
        u, v, ang = _to_u_v_angle(*(1000.0 * p))
        model = ctf_2d(optics.with_defocus(u, v, ang), (n, n))[band].astype(np.float64) ** 2
        return -float(_ncc(model, data))

    from scipy.optimize import minimize  # here: see emtools/kernels/__init__.py

    # simplex steps of 100 Å: about a tenth of a ring at the outer band for 10,000 Å
    simplex = start + np.vstack([np.zeros(3), 0.1 * np.eye(3)])
    res = minimize(
        score,
        start,
        method="Nelder-Mead",
        options={"initial_simplex": simplex, "xatol": 1e-3, "fatol": 1e-6, "maxiter": 600},
    )
    u, v, ang = _to_u_v_angle(*(1000.0 * res.x))
    fitted = optics.with_defocus(u, v, ang)
    freqs, local = fit_resolution_curve(spectrum, fitted, s_min)
    return CtfFit(
        params=fitted,
        cc=-float(res.fun),
        resolution_a=fit_resolution(freqs, local, fitted, resolution_threshold),
        frequencies=freqs,
        local_cc=local,
    )


def fit_resolution_curve(
    spectrum: np.ndarray, params: CtfParams, s_min: float
) -> tuple[np.ndarray, np.ndarray]:
    """Local NCC between ``CTF²`` and ``spectrum`` as a function of frequency.

    Each pixel is moved to the frequency at which the *mean* defocus has the same phase
    (``s · sqrt(Δf(θ) / Δf_mean)``), which lines the astigmatic rings up; the NCC of bin
    ``k`` is taken over ``±`` one Thon ring period around it (at least 3 bins).
    """
    n = spectrum.shape[0]
    px = params.pixel_size_a
    fy = np.fft.fftfreq(n)[:, None] / px
    fx = np.fft.rfftfreq(n)[None, :] / px
    s = np.sqrt(fy * fy + fx * fx)
    theta = np.arctan2(fy, fx)
    ang = np.deg2rad(params.defocus_angle_deg)
    mean = params.defocus_mean_a
    local_def = mean + 0.5 * (params.defocus_u_a - params.defocus_v_a) * np.cos(2 * (theta - ang))
    s_eq = s * np.sqrt(np.clip(local_def, 1.0, None) / mean)
    model = ctf_2d(params, (n, n)).astype(np.float64) ** 2
    data = spectrum[:, : n // 2 + 1].astype(np.float64)
    keep = s >= s_min
    bins = np.rint(s_eq[keep] * n * px).astype(np.int64)
    nb = int(bins.max()) + 1

    def sums(w: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(np.bincount(bins, w, minlength=nb))])

    c_n, c_m, c_d = sums(np.ones(bins.size)), sums(model[keep]), sums(data[keep])
    c_mm, c_dd, c_md = sums(model[keep] ** 2), sums(data[keep] ** 2), sums(model[keep] * data[keep])
    freqs = np.arange(nb) / (n * px)
    lam = electron_wavelength_a(params.voltage_kv)
    slope = 2 * np.pi * lam * mean * freqs - 2 * np.pi * params.cs_mm * 1e7 * lam**3 * freqs**3
    period_bins = np.pi / np.maximum(np.abs(slope), 1e-12) * n * px
    half_w = np.clip(np.rint(period_bins), 1, nb).astype(np.int64)
    lo = np.clip(np.arange(nb) - half_w, 0, nb)
    hi = np.clip(np.arange(nb) + half_w + 1, 0, nb)
    cnt = c_n[hi] - c_n[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        sm, sd = c_m[hi] - c_m[lo], c_d[hi] - c_d[lo]
        cov = (c_md[hi] - c_md[lo]) - sm * sd / cnt
        vm = (c_mm[hi] - c_mm[lo]) - sm * sm / cnt
        vd = (c_dd[hi] - c_dd[lo]) - sd * sd / cnt
        local = cov / np.sqrt(vm * vd)
    local[(cnt < 10) | (freqs < s_min)] = np.nan
    return freqs, local


def fit_resolution(
    freqs: np.ndarray, local_cc: np.ndarray, params: CtfParams, threshold: float = 0.3
) -> float:
    """Resolution (Å) of the first frequency beyond the first Thon ring where the local
    NCC drops below ``threshold``; the highest frequency analysed if it never does."""
    lam = electron_wavelength_a(params.voltage_kv)
    first_zero = np.sqrt(1.0 / (lam * params.defocus_mean_a))
    valid = np.isfinite(local_cc) & (freqs > first_zero)
    if not valid.any():
        return float("inf")
    idx = np.flatnonzero(valid)
    below = idx[local_cc[idx] < threshold]
    last = below[0] - 1 if below.size else idx[-1]
    return float(1.0 / freqs[max(last, idx[0])])
