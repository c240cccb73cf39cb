"""Scientific tests of the movie simulator and motion correction (movies.py, motion.py).

Movie: 1024 × 1024 px at 1.0 Å/px, 20 frames of 2 e/Å² (40 e/Å² in all), Poisson shot
noise, 100 Gaussian particles (σ = 8 px, peak 1) at contrast 0.3, radiation damage
simulated, drift of 10 px along a smooth, turning trajectory.
"""

from __future__ import annotations

import numpy as np
import pytest
from emtools.kernels import motion, movies
from emtools.kernels.micrograph_fourier import (
    critical_exposure,
    exposure_filter,
    shift_images,
)

SHAPE = (1024, 1024)
PIXEL_A = 1.0
N_FRAMES = 20
DOSE = 2.0  # e/Å² per frame
RMS_LIMIT_PX = 0.3
NOISE_FREE_RMS_LIMIT_PX = 0.05


def _clean_image(shape: tuple[int, int], n: int, seed: int) -> np.ndarray:
    pos = movies.random_positions(shape, n, 60, 40, seed=seed)
    return movies.paste_particles(shape, movies.gaussian_particles(64, 8.0, n), pos)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum(axis=1).mean()))


@pytest.fixture(scope="module")
def movie_and_fit() -> tuple[movies.SimulatedMovie, motion.MotionCorrectionResult]:
    mv = movies.simulate_movie(
        _clean_image(SHAPE, 100, seed=1),
        n_frames=N_FRAMES,
        dose_per_frame=DOSE,
        pixel_size_a=PIXEL_A,
        contrast=0.3,
        seed=3,
    )
    return mv, motion.motion_correct(mv.frames, PIXEL_A, dose_per_frame=DOSE)


def test_drift_trajectory_is_smooth_and_has_the_requested_length() -> None:
    traj = movies.drift_trajectory(20, total_drift_px=10.0, seed=4)
    assert np.allclose(traj[0], 0.0)
    path = np.linalg.norm(np.diff(traj, axis=0), axis=1).sum()
    assert path == pytest.approx(10.0, rel=1e-6)
    steps = np.linalg.norm(np.diff(traj, axis=0), axis=1)
    assert np.all(np.diff(steps) <= 1e-9)  # decelerating: beam-induced motion settles


def test_paste_particles_puts_the_centroid_at_the_subpixel_position() -> None:
    pos = np.array([[100.3, 60.7], [30.0, 150.25]])
    img = movies.paste_particles((200, 200), movies.gaussian_particles(32, 3.0, 2), pos)
    yy, xx = np.mgrid[:200, :200]
    for x, y in pos:
        w = img * ((xx - x) ** 2 + (yy - y) ** 2 < 14**2)
        cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
        assert abs(cx - x) < 0.01 and abs(cy - y) < 0.01


def test_critical_exposure_matches_grant_grigorieff() -> None:
    # Ne(1/10 Å) = 0.245 · 10^1.665 + 2.81 = 14.14 e/Å²; 0.8 × that at 200 kV
    assert float(critical_exposure(np.array([0.1]))[0]) == pytest.approx(14.14, abs=0.01)
    assert float(critical_exposure(np.array([0.1]), 200.0)[0]) == pytest.approx(0.8 * 14.14, abs=0.01)
    q = exposure_filter((64, 64), 1.0, [0.0, 20.0])
    assert q[0].min() == 1.0 and q[1, 0, 0] == 1.0 and q[1].min() < 0.5


def test_noise_free_drift_is_recovered_exactly() -> None:
    mv = movies.simulate_movie(
        _clean_image((512, 512), 16, seed=5),
        n_frames=12,
        dose_per_frame=DOSE,
        pixel_size_a=PIXEL_A,
        contrast=0.3,
        noise="none",
        radiation_damage=False,
        seed=6,
    )
    fit = motion.motion_correct(mv.frames, PIXEL_A, smoothing_window=1)
    truth = mv.shifts - mv.shifts.mean(axis=0)
    assert fit.converged
    assert _rms(fit.shifts, truth) < NOISE_FREE_RMS_LIMIT_PX


def test_motion_correction_recovers_the_simulated_drift(movie_and_fit) -> None:
    mv, fit = movie_and_fit
    truth = mv.shifts - mv.shifts.mean(axis=0)
    rms = _rms(fit.shifts, truth)
    assert fit.converged
    assert np.ptp(mv.shifts, axis=0).max() > 5.0  # there was real drift to find
    assert rms < RMS_LIMIT_PX, f"RMS drift error {rms:.3f} px"  # reached ~0.16 px
    assert np.abs(fit.shifts - truth).max() < 2 * RMS_LIMIT_PX


def test_dose_weighted_sum_beats_the_unaligned_sum(movie_and_fit) -> None:
    mv, fit = movie_and_fit
    # the aligned sums sit at the mean position of the movie; dark particles: minus sign
    reference = -shift_images(mv.signal, mv.shifts.mean(axis=0))
    cc_unaligned = _ncc(mv.frames.sum(axis=0), reference)
    cc_aligned = _ncc(fit.aligned_sum, reference)
    cc_weighted = _ncc(fit.dose_weighted_sum, reference)
    # reached: unaligned 0.226, aligned 0.233, dose-weighted 0.233
    assert cc_weighted > 1.02 * cc_unaligned
    assert cc_aligned > 1.02 * cc_unaligned
    assert cc_weighted >= cc_aligned
    # its mean is the plain sum's, by construction
    assert fit.dose_weighted_sum.mean() == pytest.approx(fit.aligned_sum.mean(), rel=1e-4)


def test_single_frame_movie_is_rejected() -> None:
    with pytest.raises(motion.MotionCorrectionError):
        motion.estimate_shifts(np.zeros((1, 64, 64), np.float32), 1.0)
