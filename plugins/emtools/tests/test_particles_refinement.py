"""Gold-standard 3D refinement from a 30 Å low-passed initial model.

Numbers are those measured on two shared cores; thresholds leave ~10 % margin.
"""

import numpy as np
import pytest
from emtools.kernels.fsc import fsc
from emtools.kernels.geometry import angular_distance_deg
from emtools.kernels.phantom import make_phantom
from emtools.kernels.refinement import RefinementInputError, RefinementSettings, refine_3d
from emtools.kernels.simulate_particles import simulate_particles


def _run(box, pixel, n, snr, settings):
    truth = make_phantom(box, pixel, seed=0)
    stack = simulate_particles(truth, n, pixel, snr=snr, seed=1)
    m = stack.metadata
    result = refine_3d(
        stack.images, stack.optics, m["defocus_u"], m["defocus_v"], m["defocus_angle"], truth, pixel, settings
    )
    # every map the refinement produced is finite: its resolutions below would mean nothing otherwise
    for name, volume in (("map", result.volume), ("half 1", result.half_maps[0]), ("half 2", result.half_maps[1])):
        assert np.isfinite(volume).all(), name
    assert np.isfinite(result.fsc.fsc).all() and np.isfinite(result.resolution_a)
    errors = angular_distance_deg(result.rotations, stack.rotations)
    shift_err = np.hypot(result.poses["shift_x"] - m["shift_x"], result.poses["shift_y"] - m["shift_y"])
    vs_truth = fsc(result.volume, truth, pixel).resolution(0.5)
    return result, errors, shift_err, vs_truth


def test_small_refinement_recovers_poses_and_resolution():
    # box 32, 4 Å/px (Nyquist 8 Å), 400 particles, SNR 1.0, 6 iterations: ~6 s
    result, err, shift_err, vs_truth = _run(32, 4.0, 400, 1.0, RefinementSettings(max_iterations=6))
    # measured: half-map FSC 0.143 at 9.0 Å, map vs truth 0.5 at 9.5 Å,
    # 94 % of orientations within 10°, median error 3.6°, median origin error 0.12 px
    assert result.resolution_a < 10.0
    assert vs_truth < 10.5
    assert np.mean(err < 10.0) > 0.85
    assert np.median(err) < 5.0
    assert np.median(shift_err) < 0.3
    assert result.history[0].search == "global" and result.history[-1].search == "local"
    assert result.history[-1].resolution_a < 30.0  # started from 30 Å
    assert set(result.poses) == {"rot", "tilt", "psi", "shift_x", "shift_y"}
    assert np.bincount(result.half).tolist() == [200, 200]


@pytest.mark.slow
def test_refinement_of_1000_noisy_particles():
    # box 48, 3 Å/px (Nyquist 6 Å), 1,000 particles, SNR 0.1, default settings: ~28 s
    result, err, shift_err, vs_truth = _run(48, 3.0, 1000, 0.1, RefinementSettings())
    # measured: half-map FSC 0.143 at 9.35 Å, map vs truth 0.5 at 10.5 Å,
    # 71 % of orientations within 10°, median error 7.0°, median origin error 0.27 px
    assert result.resolution_a < 10.0
    assert vs_truth < 11.5
    assert np.mean(err < 10.0) > 0.63
    assert np.median(err) < 8.0
    assert np.median(shift_err) < 0.4


def test_mismatched_initial_model_is_rejected():
    with pytest.raises(RefinementInputError):
        refine_3d(
            np.zeros((4, 16, 16), dtype=np.float32),
            None,
            np.zeros(4),
            np.zeros(4),
            np.zeros(4),
            np.zeros((8, 8, 8), dtype=np.float32),
            1.0,
        )
