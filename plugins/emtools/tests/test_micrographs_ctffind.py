"""Scientific tests of CTF estimation (ctffind.py) on simulated micrographs.

Micrograph: 1024 × 1024 px at 1.5 Å/px, 300 kV, Cs 2.7 mm, 10 % amplitude contrast,
envelope B = 100 Å², specimen = Gaussian noise with a decaying spectrum (so the
background falls with frequency as in real data), 40 e/Å² with Gaussian-approximated
shot noise. SNR = variance of the CTF-modulated signal / variance of the shot noise,
per pixel, over the whole micrograph. Fitted with 512 px tiles, band 30-5 Å.
"""

from __future__ import annotations

import numpy as np
import pytest
from emtools.kernels import ctffind, movies
from emtools.kernels.ctf import CtfParams, ctf_2d

PIXEL_A = 1.5
SHAPE = (1024, 1024)
DOSE = 40.0  # e/Å²
DEFOCUS_TOLERANCE_A = 200.0
DEFOCUS_TOLERANCE_REL = 0.02
ANGLE_TOLERANCE_DEG = 5.0


def _specimen(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ft = np.fft.rfft2(rng.standard_normal(SHAPE))
    fy = np.fft.fftfreq(SHAPE[0])[:, None] / PIXEL_A
    fx = np.fft.rfftfreq(SHAPE[1])[None, :] / PIXEL_A
    s2 = fx * fx + fy * fy
    img = np.fft.irfft2(ft * np.exp(-20.0 * s2) * (1.0 + 0.5 / (1.0 + s2 * 400.0**2)), s=SHAPE)
    return (img / img.std()).astype(np.float32)


def _optics(du: float = 15000.0, dv: float = 15000.0, angle: float = 0.0) -> CtfParams:
    return CtfParams(300.0, 2.7, 0.1, PIXEL_A, du, dv, angle, bfactor=100.0)


def simulate_ctf_micrograph(params: CtfParams, snr: float, seed: int = 1) -> np.ndarray:
    """One 40 e/Å² exposure whose CTF-modulated signal has the given per-pixel SNR."""
    spec = _specimen()
    signal = np.fft.irfft2(np.fft.rfft2(spec) * ctf_2d(params, SHAPE), s=SHAPE)
    dose_px = DOSE * PIXEL_A**2
    contrast = float(np.sqrt(snr / (dose_px * signal.var())))  # (d c σ_s)² / d = snr
    mv = movies.simulate_movie(
        spec,
        n_frames=1,
        dose_per_frame=DOSE,
        pixel_size_a=PIXEL_A,
        shifts=np.zeros((1, 2)),
        contrast=contrast,
        ctf=params,
        radiation_damage=False,
        noise="gaussian",
        seed=seed,
    )
    return mv.frames[0]


def _angle_error(a: float, b: float) -> float:
    return abs((a - b + 90.0) % 180.0 - 90.0)


@pytest.mark.parametrize(
    ("du", "dv", "angle"),
    [(10500.0, 9500.0, 30.0), (20600.0, 19400.0, 75.0), (30500.0, 29500.0, 120.0), (25000.0, 22000.0, 150.0)],
)
def test_defocus_and_astigmatism_are_recovered(du: float, dv: float, angle: float) -> None:
    truth = _optics(du, dv, angle)
    fit = ctffind.estimate_ctf(simulate_ctf_micrograph(truth, snr=0.1), _optics())
    tol_u = min(DEFOCUS_TOLERANCE_A, DEFOCUS_TOLERANCE_REL * du)
    tol_v = min(DEFOCUS_TOLERANCE_A, DEFOCUS_TOLERANCE_REL * dv)
    assert abs(fit.defocus_u_a - du) < tol_u, fit  # reached: |error| <= 40 Å
    assert abs(fit.defocus_v_a - dv) < tol_v, fit
    assert _angle_error(fit.defocus_angle_deg, angle) < ANGLE_TOLERANCE_DEG, fit  # reached <= 0.7°
    assert fit.defocus_u_a >= fit.defocus_v_a and 0.0 <= fit.defocus_angle_deg < 180.0
    assert fit.cc > 0.1


def test_no_astigmatism_gives_equal_defoci() -> None:
    fit = ctffind.estimate_ctf(simulate_ctf_micrograph(_optics(15000.0, 15000.0), snr=0.1), _optics())
    assert abs(fit.defocus_u_a - 15000.0) < DEFOCUS_TOLERANCE_A
    assert abs(fit.defocus_v_a - 15000.0) < DEFOCUS_TOLERANCE_A
    assert fit.defocus_u_a - fit.defocus_v_a < DEFOCUS_TOLERANCE_A


def test_fit_resolution_follows_the_signal() -> None:
    truth = _optics(20000.0, 19000.0, 45.0)
    strong = ctffind.estimate_ctf(simulate_ctf_micrograph(truth, snr=0.15), _optics())
    weak = ctffind.estimate_ctf(simulate_ctf_micrograph(truth, snr=0.03), _optics())
    # reached 7.1 Å at SNR 0.15 and 19.2 Å at SNR 0.03 (Nyquist is 3 Å)
    assert strong.resolution_a < 10.0
    assert weak.resolution_a > strong.resolution_a + 2.0
    assert strong.cc > weak.cc
    # the local agreement is high inside the fit resolution
    inside = (strong.frequencies > 1 / 20.0) & (strong.frequencies < 1 / (strong.resolution_a + 1.0))
    assert np.nanmean(strong.local_cc[inside]) > 0.5  # reached 0.56


def test_band_beyond_nyquist_or_empty_is_an_error() -> None:
    img = np.zeros((256, 256), np.float32)
    with pytest.raises(ctffind.CtfEstimationError):
        ctffind.estimate_ctf(img, _optics(), tile_size=512)
    with pytest.raises(ctffind.CtfEstimationError):
        ctffind.estimate_ctf(img, _optics(), tile_size=128, min_resolution_a=4.0, max_resolution_a=5.0)
