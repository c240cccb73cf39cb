"""Contrast transfer function of the electron microscope (RELION / CTFFIND convention).

Convention, chosen so that our STAR files mean the same as RELION's and CTFFIND's:

* defocus is positive for underfocus, in Ångström; ``defocus_u_a`` is the defocus along
  the direction at ``defocus_angle_deg`` from the x axis (counter-clockwise towards +y,
  with y the row index of the image), ``defocus_v_a`` the one perpendicular to it:
  ``Δf(θ) = (U + V)/2 + (U − V)/2 · cos(2(θ − angle))``;
* the phase aberration is
  ``γ(s) = π λ Δf s² − (π/2) Cs λ³ s⁴ + φ + atan(w / sqrt(1 − w²))``
  with ``w`` the amplitude contrast and ``φ`` the phase-plate shift;
* the CTF is ``sin(γ) · exp(−B s² / 4)``, as RELION computes it: positive at low
  frequency, so a projection of positive density times the CTF gives the "white
  particle" images that RELION expects. CTFFIND's ``−sin`` differs by an overall sign
  only; its zeros (Thon rings) are the same.

Grids: :func:`ctf_2d` returns the CTF on the unshifted layout of ``rfft2`` (``half=True``,
shape ``(ny, nx // 2 + 1)``) or of ``fft2`` (``half=False``, shape ``(ny, nx)``), origin at
index ``[0, 0]``; apply ``fftshift`` only for display.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import numpy as np


class CtfParameterError(ValueError):
    """CTF parameters that cannot describe a microscope (e.g. amplitude contrast >= 1)."""


@dataclass(frozen=True)
class CtfParams:
    """Microscope and per-micrograph CTF parameters (lengths in Å, angles in degrees)."""

    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float
    pixel_size_a: float
    defocus_u_a: float
    defocus_v_a: float
    defocus_angle_deg: float
    phase_shift_deg: float = 0.0
    bfactor: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.amplitude_contrast < 1.0:
            raise CtfParameterError(f"amplitude_contrast must be in [0, 1), got {self.amplitude_contrast}")
        if self.voltage_kv <= 0 or self.pixel_size_a <= 0:
            raise CtfParameterError("voltage_kv and pixel_size_a must be positive")

    @property
    def defocus_mean_a(self) -> float:
        """Mean of the two principal defoci."""
        return 0.5 * (self.defocus_u_a + self.defocus_v_a)

    def with_defocus(self, defocus_u_a: float, defocus_v_a: float, defocus_angle_deg: float) -> CtfParams:
        """A copy with another defocus (per particle or per micrograph)."""
        return replace(
            self, defocus_u_a=defocus_u_a, defocus_v_a=defocus_v_a, defocus_angle_deg=defocus_angle_deg
        )


def electron_wavelength_a(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV.

    ``λ = h / sqrt(2 m e V (1 + e V / (2 m c²)))`` = 12.2643 / sqrt(V (1 + 0.978466e-6 V)).
    """
    volts = voltage_kv * 1e3
    return float(12.2642598 / np.sqrt(volts * (1.0 + 0.978466e-6 * volts)))


def _ctf_core(
    params: CtfParams,
    s2: Any,
    theta: Any,
    defocus_u: Any,
    defocus_v: Any,
    defocus_angle_deg: Any,
    xp: ModuleType,
) -> Any:
    """CTF at squared spatial frequency ``s2`` (1/Å²) and azimuth ``theta`` (rad), broadcasting."""
    lam = electron_wavelength_a(params.voltage_kv)
    cs_a = params.cs_mm * 1e7
    w = params.amplitude_contrast
    amp_phase = np.arctan(w / np.sqrt(1.0 - w * w))
    ang = xp.deg2rad(defocus_angle_deg)
    defocus = 0.5 * (defocus_u + defocus_v) + 0.5 * (defocus_u - defocus_v) * xp.cos(2.0 * (theta - ang))
    gamma = (
        np.pi * lam * defocus * s2
        - 0.5 * np.pi * cs_a * lam**3 * s2 * s2
        + np.deg2rad(params.phase_shift_deg)
        + amp_phase
    )
    ctf = xp.sin(gamma)
    if params.bfactor:
        ctf = ctf * xp.exp(-0.25 * params.bfactor * s2)
    return ctf


def _freq_grid(shape: tuple[int, int], pixel_size_a: float, half: bool, xp: ModuleType) -> tuple[Any, Any]:
    ny, nx = shape
    # float64 inside: γ reaches hundreds of radians at high defocus, beyond float32's
    # precision for the phase; only the result is stored as float32
    fy = xp.fft.fftfreq(ny)[:, None] / pixel_size_a
    fx_1d = xp.fft.rfftfreq(nx) if half else xp.fft.fftfreq(nx)
    fx = fx_1d[None, :] / pixel_size_a
    return fy, fx


def ctf_2d(params: CtfParams, shape: tuple[int, int], xp: ModuleType = np, half: bool = True) -> Any:
    """CTF on the FFT grid of a real image of ``shape = (ny, nx)`` (float32).

    ``half=True`` gives the ``rfft2`` layout ``(ny, nx // 2 + 1)``; ``half=False`` the full
    ``fft2`` layout ``(ny, nx)``. Both are unshifted (zero frequency at ``[0, 0]``).
    """
    fy, fx = _freq_grid(shape, params.pixel_size_a, half, xp)
    s2 = fx * fx + fy * fy
    theta = xp.arctan2(fy, fx)
    out = _ctf_core(params, s2, theta, params.defocus_u_a, params.defocus_v_a, params.defocus_angle_deg, xp)
    return out.astype(xp.float32)


def ctf_2d_stack(
    params: CtfParams,
    defocus_u_a: Any,
    defocus_v_a: Any,
    defocus_angle_deg: Any,
    shape: tuple[int, int],
    xp: ModuleType = np,
    half: bool = True,
) -> Any:
    """CTFs of N particles that share the optics of ``params`` but have their own defocus.

    Returns float32 ``(N, ny, nx // 2 + 1)`` (``half``) or ``(N, ny, nx)``; the defocus of
    ``params`` itself is ignored. One call instead of N keeps this vectorised.
    """
    du = xp.asarray(defocus_u_a, dtype=xp.float64).reshape(-1, 1, 1)
    dv = xp.asarray(defocus_v_a, dtype=xp.float64).reshape(-1, 1, 1)
    da = xp.asarray(defocus_angle_deg, dtype=xp.float64).reshape(-1, 1, 1)
    fy, fx = _freq_grid(shape, params.pixel_size_a, half, xp)
    s2 = (fx * fx + fy * fy)[None]
    theta = xp.arctan2(fy, fx)[None]
    return _ctf_core(params, s2, theta, du, dv, da, xp).astype(xp.float32)


def ctf_1d(params: CtfParams, freqs: Any, angle_deg: float | None = None) -> np.ndarray:
    """CTF along one radial line, ``freqs`` in 1/Å.

    ``angle_deg=None`` uses the mean defocus (the rotational average of an astigmatic CTF
    has its zeros there to first order); otherwise the line at that azimuth.
    """
    s = np.asarray(freqs, dtype=np.float64)
    if angle_deg is None:
        du = dv = params.defocus_mean_a
        theta = 0.0
    else:
        du, dv = params.defocus_u_a, params.defocus_v_a
        theta = np.deg2rad(angle_deg)
    return _ctf_core(params, s * s, theta, du, dv, params.defocus_angle_deg, np)


def ctf_zero_frequencies(params: CtfParams, n_zeros: int, angle_deg: float | None = None) -> np.ndarray:
    """Spatial frequencies (1/Å) of the first ``n_zeros`` CTF zeros (Thon rings), analytically.

    Solves ``γ(s) = kπ`` as a quadratic in ``s²``; for the (small) Cs term the root that
    continues from ``s = 0`` is the one taken. Useful for CTF fitting and for tests.
    """
    lam = electron_wavelength_a(params.voltage_kv)
    cs_a = params.cs_mm * 1e7
    w = params.amplitude_contrast
    offset = np.arctan(w / np.sqrt(1.0 - w * w)) + np.deg2rad(params.phase_shift_deg)
    if angle_deg is None:
        defocus = params.defocus_mean_a
    else:
        d = np.deg2rad(angle_deg - params.defocus_angle_deg)
        defocus = params.defocus_mean_a + 0.5 * (params.defocus_u_a - params.defocus_v_a) * np.cos(2 * d)
    # gamma(s) increases from `offset` at s=0 for underfocus, so zeros are at k*pi for
    # k = ceil(offset/pi) .. ; with offset in [0, pi) the first is k=1 unless offset == 0.
    k0 = int(np.floor(offset / np.pi)) + 1
    k = np.arange(k0, k0 + n_zeros, dtype=np.float64)
    a = 0.5 * np.pi * cs_a * lam**3
    b = np.pi * lam * defocus
    c = k * np.pi - offset
    if a == 0.0:
        s2 = c / b
    else:
        disc = b * b - 4.0 * a * c
        s2 = np.where(disc >= 0, (b - np.sqrt(np.clip(disc, 0.0, None))) / (2.0 * a), np.nan)
    return np.sqrt(s2)
