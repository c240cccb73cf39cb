"""FSC curves and resolution estimates."""

import numpy as np
import pytest
from emtools.kernels.filters import soft_spherical_mask
from emtools.kernels.fsc import FscCurve, fsc, resolution_at
from emtools.kernels.phantom import make_phantom


def test_fsc_of_a_map_with_itself_is_one():
    v = make_phantom(32, 4.0, seed=3)
    curve = fsc(v, v, 4.0)
    assert np.allclose(curve.fsc, 1.0)
    assert curve.resolution(0.143) == pytest.approx(8.0)  # never crosses: Nyquist


def test_fsc_against_independent_noise_is_near_zero():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 48, 48, 48))
    f = fsc(a, b, 1.0).fsc
    assert abs(f[3:].mean()) < 0.02
    # each shell of r ≳ 3 has ≥ 100 voxels: |FSC| ≲ 3/sqrt(n_voxels)
    assert np.abs(f[3:]).max() < 0.2


def test_fsc_is_invariant_to_scale_and_drops_with_noise():
    v = make_phantom(32, 4.0, seed=1)
    noisy = v + np.random.default_rng(1).normal(0, 0.05, v.shape)
    f = fsc(v * 3.0, noisy, 4.0).fsc
    assert f[1] > 0.99 and f[-1] < f[1]


def test_resolution_interpolates_between_shells():
    curve = FscCurve(np.arange(5, dtype=float), np.array([1.0, 0.9, 0.5, 0.1, 0.0]), 40, 2.0)
    # 0.143 lies between shell 2 (0.5) and 3 (0.1): r = 2 + 0.357/0.4 = 2.8925
    assert resolution_at(curve, 0.143) == pytest.approx(80.0 / 2.8925)
    assert resolution_at(curve, 0.5) == pytest.approx(40.0)


def test_masked_fsc_and_mask_helper():
    m = soft_spherical_mask((32, 32, 32), 10.0, 4.0)
    assert m[16, 16, 16] == 1.0 and m[0, 0, 0] == 0.0
    assert 0.0 < m[16, 16, 16 + 12] < 1.0
    v = make_phantom(32, 4.0, seed=2)
    assert fsc(v, v, 4.0, mask=m).fsc.min() == pytest.approx(1.0)
