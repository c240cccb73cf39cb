"""Scientific tests of particle extraction (extraction.py).

Micrograph: 512 × 512 px, 16 dark Gaussian particles (σ = 5 px, peak 1) at sub-pixel
positions at least 60 px apart and 40 px from the edges, white Gaussian noise σ = 0.1,
boxes of 64 px, background radius 24 px.
"""

from __future__ import annotations

import numpy as np
import pytest
from emtools.kernels import extraction, movies
from emtools.kernels.ctf import CtfParams, ctf_2d
from emtools.kernels.xp import centered_irfft2, centered_rfft2

SHAPE = (512, 512)
BOX = 64
N = 16


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    pos = movies.random_positions(SHAPE, N, 60, 40, seed=7)
    clean = movies.paste_particles(SHAPE, movies.gaussian_particles(BOX, 5.0, N), pos)
    noise = np.random.default_rng(8).normal(0.0, 0.1, SHAPE)
    return (-clean + noise).astype(np.float32), pos


def _centroids(boxes: np.ndarray, radius: float = 12.0) -> np.ndarray:
    """Intensity centroid (x, y) inside ``radius`` px of the box centre, after subtracting
    the mean outside ``radius + 8`` px."""
    c = np.arange(boxes.shape[-1]) - boxes.shape[-1] // 2
    yy, xx = np.meshgrid(c, c, indexing="ij")
    r2 = xx**2 + yy**2
    w = (boxes - boxes[:, r2 > (radius + 8) ** 2].mean(axis=1)[:, None, None]) * (r2 < radius**2)
    total = w.sum(axis=(1, 2))
    return np.stack([(w * xx).sum(axis=(1, 2)) / total, (w * yy).sum(axis=(1, 2)) / total], axis=1)


def test_boxes_are_centred_on_the_particles(scene) -> None:
    mic, pos = scene
    out = extraction.extract_particles(mic, pos, BOX, invert_contrast=True, normalize=False)
    assert out.images.shape == (N, BOX, BOX) and out.images.dtype == np.float32
    assert out.kept.all()
    # the rounding to the nearest pixel is the only offset: residual within 0.5 px + noise
    offset = _centroids(out.images) - (pos - out.centres)
    assert np.abs(offset).max() < 0.3  # reached 0.24 px


def test_background_is_normalised(scene) -> None:
    mic, pos = scene
    out = extraction.extract_particles(mic, pos, BOX, invert_contrast=True, background_radius_px=24.0)
    c = np.arange(BOX) - BOX // 2
    outside = (c[:, None] ** 2 + c[None, :] ** 2) > 24.0**2
    bg = out.images[:, outside]
    assert np.abs(bg.mean(axis=1)).max() < 1e-4
    assert np.abs(bg.std(axis=1) - 1.0).max() < 1e-3
    # white particles after inversion: the centre is well above the background
    assert out.images[:, BOX // 2, BOX // 2].min() > 5.0  # reached 8.4


def test_binning_keeps_the_centre_and_the_values(scene) -> None:
    mic, pos = scene
    full = extraction.extract_particles(mic, pos, BOX, invert_contrast=True, normalize=False)
    binned = extraction.extract_particles(
        mic, pos, BOX, bin_factor=2, invert_contrast=True, normalize=False, pixel_size_a=1.2
    )
    assert binned.images.shape == (N, BOX // 2, BOX // 2)
    assert binned.pixel_size_a == pytest.approx(2.4)
    assert binned.images.mean() == pytest.approx(full.images.mean(), abs=1e-3)
    offset = 2.0 * _centroids(binned.images, 6.0) - (pos - full.centres)
    assert np.abs(offset).max() < 0.6  # in original pixels; reached 0.26
    with pytest.raises(extraction.ExtractionError):
        extraction.extract_particles(mic, pos, BOX, bin_factor=3)


def test_edges_are_skipped_or_padded(scene) -> None:
    mic, _ = scene
    coords = np.array([[5.0, 256.0], [256.0, 256.0], [500.0, 510.0]])
    skipped = extraction.extract_particles(mic, coords, BOX)
    assert skipped.kept.tolist() == [False, True, False] and skipped.images.shape[0] == 1
    padded = extraction.extract_particles(mic, coords, BOX, edge="pad", normalize=False)
    assert padded.kept.all() and padded.images.shape[0] == 3
    box = padded.images[0]
    inside = box[:, BOX // 2 - 5 :]  # columns 27.. are x >= 0 in the micrograph
    fill = box[:, : BOX // 2 - 5]
    assert np.allclose(fill, inside.mean(), atol=1e-5)  # padded with the mean of what was inside
    with pytest.raises(extraction.ExtractionError):
        extraction.extract_particles(mic, coords, BOX, edge="wrap")


def test_phase_flip_restores_correlation_with_the_particle() -> None:
    ctf = CtfParams(300.0, 2.7, 0.1, 1.0, 12000.0, 11000.0, 30.0)
    n = 256
    particle = movies.gaussian_particles(n, 3.0, 1)
    particle += movies.gaussian_particles(n, 1.5, 1, angles_deg=0.0) * 0.5
    modulated = centered_irfft2(centered_rfft2(particle) * ctf_2d(ctf, (n, n)), (n, n)).astype(np.float32)
    mic = np.zeros((512, 512), np.float32)
    mic[128:384, 128:384] = modulated[0]
    at = np.array([[256.0, 256.0]])
    plain = extraction.extract_particles(mic, at, n, normalize=False).images[0]
    flipped = extraction.extract_particles(mic, at, n, normalize=False, ctf=ctf, pixel_size_a=1.0).images[0]

    def ncc(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    assert ncc(flipped, particle[0]) > 0.6  # reached 0.91 (unflipped 0.53)
    assert ncc(flipped, particle[0]) > ncc(plain, particle[0]) + 0.2
