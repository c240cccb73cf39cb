"""Scientific tests of particle picking (picking.py) on simulated micrographs.

Micrograph: 1024 × 1024 px, 80 particles at least 48 px apart and 32 px from the edges,
dark on a zero background (peak amplitude 1) plus white Gaussian noise of σ = 1
(peak SNR 1). A pick is correct when it is matched one-to-one (Hungarian assignment)
to a true particle within 4 px (round particles, σ = 6 px) or 6 px (elongated ones,
σ = 4 × 10 px, whose position along the long axis is less well defined: a quarter of
the long-axis FWHM of 23.5 px).
"""

from __future__ import annotations

import numpy as np
import pytest
from emtools.kernels import movies, picking
from scipy.optimize import linear_sum_assignment

SHAPE = (1024, 1024)
N_PARTICLES = 80
NOISE_SIGMA = 1.0
MATCH_TOLERANCE_PX = 4.0
MATCH_TOLERANCE_ELONGATED_PX = 6.0
MIN_RECALL = 0.95
MIN_PRECISION = 0.95


def _positions() -> np.ndarray:
    return movies.random_positions(SHAPE, N_PARTICLES, 48, 32, seed=2)


def _micrograph(particles: np.ndarray, positions: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clean = movies.paste_particles(SHAPE, particles, positions)
    return (-clean + rng.normal(0.0, NOISE_SIGMA, SHAPE)).astype(np.float32)


def recall_precision(picks: np.ndarray, truth: np.ndarray, tol: float) -> tuple[float, float, np.ndarray]:
    """Recall, precision and the (pick, truth) index pairs matched within ``tol``."""
    if len(picks) == 0:
        return 0.0, 0.0, np.zeros((0, 2), int)
    d = np.linalg.norm(picks[:, None] - truth[None], axis=2)
    rows, cols = linear_sum_assignment(d)
    ok = d[rows, cols] <= tol
    return ok.sum() / len(truth), ok.sum() / len(picks), np.stack([rows[ok], cols[ok]], axis=1)


def test_blob_picker_finds_round_particles() -> None:
    pos = _positions()
    mic = _micrograph(movies.gaussian_particles(48, 6.0, N_PARTICLES), pos, seed=0)
    picks = picking.pick_blobs(mic, radius_px=6.0 * np.sqrt(2.0))
    recall, precision, _ = recall_precision(picks.coordinates, pos, MATCH_TOLERANCE_PX)
    assert recall >= MIN_RECALL and precision >= MIN_PRECISION, (recall, precision)  # reached 1.0, 0.99
    assert np.all(np.diff(picks.scores) <= 0)  # best first


def test_score_percentile_and_max_picks_trim_the_list() -> None:
    pos = _positions()
    mic = _micrograph(movies.gaussian_particles(48, 6.0, N_PARTICLES), pos, seed=0)
    everything = picking.pick_blobs(mic, radius_px=8.5)
    top = picking.pick_blobs(mic, radius_px=8.5, score_percentile=50.0)
    assert len(top.scores) == pytest.approx(len(everything.scores) / 2, abs=1)
    assert len(picking.pick_blobs(mic, radius_px=8.5, max_picks=10).scores) == 10
    d = np.linalg.norm(everything.coordinates[:, None] - everything.coordinates[None], axis=2)
    assert d[np.triu_indices(len(d), 1)].min() > 2 * 8.5  # min distance honoured


def test_template_picker_finds_elongated_particles_and_their_angle() -> None:
    pos = _positions()
    rng = np.random.default_rng(1)
    angles = rng.uniform(0.0, 180.0, N_PARTICLES)
    mic = _micrograph(movies.gaussian_particles(48, 4.0, N_PARTICLES, 2.5, angles), pos, seed=3)
    template = movies.gaussian_particles(48, 4.0, 1, elongation=2.5)
    picks = picking.pick_templates(mic, template, angle_step_deg=15.0)
    recall, precision, pairs = recall_precision(picks.coordinates, pos, MATCH_TOLERANCE_ELONGATED_PX)
    assert recall >= MIN_RECALL and precision >= MIN_PRECISION, (recall, precision)  # reached 1.0, 1.0
    dist = np.linalg.norm(picks.coordinates[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
    assert np.median(dist) < 2.5  # reached 1.3 px
    # the blob is symmetric under 180°; 15° sampling: error within half a step plus noise
    err = np.abs((picks.angles_deg[pairs[:, 0]] - angles[pairs[:, 1]] + 90.0) % 180.0 - 90.0)
    assert np.median(err) < 7.5  # reached 5.0°


def test_blob_picker_sees_nothing_in_pure_noise() -> None:
    noise = np.random.default_rng(5).normal(0.0, 1.0, (512, 512)).astype(np.float32)
    assert len(picking.pick_blobs(noise, radius_px=8.5).scores) <= 2  # 4 robust σ


def test_template_larger_than_micrograph_is_an_error() -> None:
    with pytest.raises(picking.PickingError):
        picking.pick_templates(np.zeros((32, 32), np.float32), np.zeros((48, 48), np.float32))
