"""FSC curves and resolution estimates."""

import numpy as np
import pytest
from emtools.kernels.filters import soft_spherical_mask
from emtools.kernels.fsc import FscCurve, NonFiniteFscError, fsc, resolution_at
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


def test_a_map_with_one_nan_voxel_is_an_error_not_nyquist():
    v = make_phantom(32, 4.0, seed=3)
    spoiled = v.copy()
    spoiled[3, 4, 5] = np.nan
    with pytest.raises(NonFiniteFscError, match=r"the second map is not finite: 1 NaN and 0 infinite voxel\(s\) "
                                                r"of 32768, the first at \(z, y, x\) = \(3, 4, 5\)"):
        fsc(v, spoiled, 4.0)
    spoiled[3, 4, 5] = np.inf
    with pytest.raises(NonFiniteFscError, match="the first map is not finite: 0 NaN and 1 infinite"):
        fsc(spoiled, v, 4.0)
    mask = soft_spherical_mask((32, 32, 32), 10.0, 4.0)
    mask[0, 0, 0] = np.nan
    with pytest.raises(NonFiniteFscError, match="the mask is not finite"):
        fsc(v, v, 4.0, mask=mask)


def test_a_nan_curve_has_no_resolution():
    # what a NaN map gives: every shell NaN, none below the threshold; it used to report Nyquist
    curve = FscCurve(np.arange(5, dtype=float), np.array([1.0, np.nan, np.nan, np.nan, np.nan]), 40, 2.0)
    with pytest.raises(NonFiniteFscError, match=r"not finite in 4 of 5 shells \(shells \[1, 2, 3, 4\]\)"):
        curve.resolution(0.143)
    with pytest.raises(NonFiniteFscError, match="threshold"):
        resolution_at(FscCurve(np.arange(3, dtype=float), np.ones(3), 8, 1.0), float("nan"))


def test_maps_too_large_for_their_fourier_power_are_an_error():
    v = make_phantom(16, 4.0, seed=3).astype(np.float64) * 1e160  # finite, but |F|² overflows to inf
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(NonFiniteFscError, match="FSC curve is not finite"):
            fsc(v, v, 4.0)
