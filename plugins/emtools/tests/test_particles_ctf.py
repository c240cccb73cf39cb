"""CTF: wavelength, zero positions against closed forms, sign convention, grid layouts."""

import numpy as np
import pytest
from emtools.kernels.ctf import (
    CtfParameterError,
    CtfParams,
    ctf_1d,
    ctf_2d,
    ctf_2d_stack,
    ctf_zero_frequencies,
    electron_wavelength_a,
)


def test_wavelength_matches_tabulated_values():
    # 0.0251 Å at 200 kV, 0.0197 Å at 300 kV (standard tables)
    assert electron_wavelength_a(200) == pytest.approx(0.02508, abs=2e-5)
    assert electron_wavelength_a(300) == pytest.approx(0.01969, abs=2e-5)


def test_zeros_without_cs_and_amplitude_contrast_are_at_sqrt_k_over_lambda_defocus():
    p = CtfParams(300, 0.0, 0.0, 1.0, 20000, 20000, 0)
    lam = electron_wavelength_a(300)
    k = np.arange(1, 6)
    expected = np.sqrt(k / (lam * 20000))
    assert np.allclose(ctf_zero_frequencies(p, 5), expected, rtol=1e-12)
    assert np.allclose(ctf_1d(p, expected), 0.0, atol=1e-9)


def test_ctf_1d_sign_changes_match_analytical_zeros_with_cs_and_amplitude_contrast():
    p = CtfParams(300, 2.7, 0.07, 1.0, 15000, 15000, 0)
    s = np.linspace(0, 0.3, 300001)
    c = ctf_1d(p, s)
    crossings = s[:-1][np.sign(c[:-1]) != np.sign(c[1:])]
    analytic = ctf_zero_frequencies(p, len(crossings))
    assert len(crossings) > 10
    assert np.allclose(crossings, analytic, atol=2e-6)  # grid step 1e-6 1/Å


def test_first_zero_for_typical_defocus_and_relion_sign():
    # 300 kV, 1.5 µm underfocus: first zero near 1/(sqrt(λΔf)) ≈ 1/17.2 Å
    p = CtfParams(300, 2.7, 0.1, 1.0, 15000, 15000, 0)
    assert 1 / ctf_zero_frequencies(p, 1)[0] == pytest.approx(17.6, abs=0.5)
    # RELION convention: positive at low frequency (sin of the amplitude-contrast phase)
    assert ctf_1d(p, [0.0])[0] == pytest.approx(0.1, abs=1e-9)
    assert ctf_1d(p, [0.03])[0] > 0.5


def test_astigmatism_angle_puts_defocus_u_along_its_azimuth():
    p = CtfParams(300, 2.7, 0.1, 1.0, 20000, 10000, 30)
    s = np.linspace(0.005, 0.2, 2000)
    along_u = ctf_1d(p, s, angle_deg=30)
    pure_u = ctf_1d(p.with_defocus(20000, 20000, 0), s)
    assert np.allclose(along_u, pure_u, atol=1e-9)
    along_v = ctf_1d(p, s, angle_deg=120)
    pure_v = ctf_1d(p.with_defocus(10000, 10000, 0), s)
    assert np.allclose(along_v, pure_v, atol=1e-9)


def test_ctf_2d_layouts_agree_with_1d_and_each_other():
    p = CtfParams(300, 2.7, 0.1, 1.5, 12000, 11000, 45)
    half = ctf_2d(p, (64, 64))
    full = ctf_2d(p, (64, 64), half=False)
    assert half.shape == (64, 33) and full.shape == (64, 64) and half.dtype == np.float32
    # columns 0..31 coincide; column 32 is -Nyquist in fft2 and +Nyquist in rfft2
    assert np.allclose(full[:, :32], half[:, :32], atol=1e-5)
    # along +x (row 0) the azimuth is 0
    fx = np.arange(33) / (64 * 1.5)
    assert np.allclose(half[0], ctf_1d(p, fx, angle_deg=0.0), atol=1e-5)
    stack = ctf_2d_stack(p, [12000, 5000], [11000, 5000], [45, 0], (64, 64))
    assert np.allclose(stack[0], half, atol=1e-5)
    assert np.allclose(stack[1], ctf_2d(p.with_defocus(5000, 5000, 0), (64, 64)), atol=1e-5)


def test_bfactor_is_a_gaussian_envelope():
    p = CtfParams(300, 2.7, 0.1, 1.0, 15000, 15000, 0)
    pb = CtfParams(300, 2.7, 0.1, 1.0, 15000, 15000, 0, bfactor=100)
    s = np.linspace(0, 0.25, 50)
    assert np.allclose(ctf_1d(pb, s), ctf_1d(p, s) * np.exp(-25 * s * s))


def test_invalid_amplitude_contrast_is_rejected():
    with pytest.raises(CtfParameterError):
        CtfParams(300, 2.7, 1.0, 1.0, 1e4, 1e4, 0)
