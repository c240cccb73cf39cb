"""Reference-free 2D classification of particles from four distinct views.

Data: the 48-px phantom at 3 Å/px, 240 particles from 4 views (rot, tilt) = (0, 0),
(0, 90), (90, 90), (45, 135), random in-plane angle, origins up to 3 px, CTF with
defocus 1-2.5 µm, SNR 0.1; phase-flipped before classification into 4 classes.
"""

import numpy as np
import pytest
from emtools.kernels.classify2d import (
    ClassificationInputError,
    class_purity,
    classify_2d,
    phase_flip,
)
from emtools.kernels.geometry import euler_to_matrix
from emtools.kernels.phantom import make_phantom
from emtools.kernels.simulate_particles import simulate_particles

VIEWS = np.array([[0, 0], [0, 90], [90, 90], [45, 135]])


@pytest.fixture(scope="module")
def four_views():
    n = 240
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(VIEWS), n)
    psi = rng.uniform(0, 360, n)
    rot = euler_to_matrix(VIEWS[labels, 0], VIEWS[labels, 1], psi)
    stack = simulate_particles(make_phantom(48, 3.0, seed=0), n, 3.0, snr=0.1, rotations=rot, seed=2)
    m = stack.metadata
    images = phase_flip(stack.images, stack.optics, m["defocus_u"], m["defocus_v"], m["defocus_angle"])
    return images, labels, psi


def test_four_views_are_sorted_into_pure_classes(four_views):
    images, labels, psi_true = four_views
    result = classify_2d(images, n_classes=4, seed=0)
    # measured: purity 1.00, every class populated, converged after 7 iterations
    assert class_purity(result.class_ids, labels) >= 0.95
    assert np.bincount(result.class_ids, minlength=4).min() >= 30
    assert result.class_averages.shape == (4, 48, 48)
    assert np.isfinite(result.class_averages).all()
    # in-plane angles are recovered up to one rotation per class (its own frame), within
    # the 10° search step: measured 94 % of particles; the (0, 0) view is nearly two-fold
    # symmetric in projection at this resolution and 13 % of it lands 180° off
    within = []
    for k in range(4):
        members = result.class_ids == k
        d = np.deg2rad(psi_true[members] - result.psi[members])
        mean_dir = np.angle(np.exp(1j * d).mean())
        within.append(np.rad2deg(np.abs(np.angle(np.exp(1j * (d - mean_dir))))) < 10.0)
    assert np.concatenate(within).mean() >= 0.88


def test_too_few_particles_for_the_classes_is_an_error():
    with pytest.raises(ClassificationInputError):
        classify_2d(np.zeros((5, 16, 16), dtype=np.float32), n_classes=4)
