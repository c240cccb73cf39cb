"""Fourier-slice projection against real-space references."""

import numpy as np
import pytest
from emtools.kernels.filters import rotate_images
from emtools.kernels.geometry import euler_to_matrix, random_rotations
from emtools.kernels.phantom import make_phantom
from emtools.kernels.projection import FourierProjector, VolumeShapeError, project
from scipy.ndimage import affine_transform

BOX, PIXEL = 48, 3.0


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(BOX, PIXEL, seed=0)


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def rotate_volume(vol, m):
    """V'(r) = V(mᵀ r) in real space with cubic splines (an independent reference)."""
    swap = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]])  # (x, y, z) <-> array axes (z, y, x)
    mm = swap @ m.T @ swap
    c = np.full(3, BOX // 2, dtype=float)
    return affine_transform(vol, mm, offset=c - mm @ c, order=3)


def test_identity_projection_is_the_sum_along_z(phantom):
    p = project(phantom, euler_to_matrix(0, 0, 0))[0]
    ref = phantom.sum(axis=0)
    assert _rel(p, ref) < 0.05  # trilinear interpolation in a 2x padded grid: 3.4 %
    assert np.corrcoef(p.ravel(), ref.ravel())[0, 1] > 0.999


def test_tilt_90_projects_along_x(phantom):
    # rot=0, tilt=90: viewing direction +x; image x is -z of the volume, image y is y
    p = project(phantom, euler_to_matrix(0, 90, 0))[0]
    ref = phantom.sum(axis=2)  # (z, y) -> need (y, x=-z)
    ref = np.roll(ref[::-1], 1, axis=0).T  # flip z about the centre voxel BOX//2
    assert _rel(p, ref) < 0.05


def test_projection_of_rotated_volume_equals_rotated_projection(phantom):
    rng = np.random.default_rng(1)
    r0 = random_rotations(1, rng)[0]
    a = random_rotations(6, rng)
    p_rotated_volume = project(rotate_volume(phantom, r0), a)
    p_composed = project(phantom, a @ r0)
    assert _rel(p_rotated_volume, p_composed) < 0.03  # measured 1.9 %


def test_psi_rotates_the_image_by_minus_psi(phantom):
    # RELION: A(rot, tilt, psi) = Rz(psi) A(rot, tilt, 0), i.e. the image turns by -psi
    a = euler_to_matrix(40, 70, 0)
    p0 = project(phantom, a)
    p30 = project(phantom, euler_to_matrix(40, 70, 30))
    assert _rel(rotate_images(p0, -30.0), p30) < 0.06


def test_shifts_move_content_by_whole_pixels(phantom):
    a = random_rotations(2, np.random.default_rng(3))
    base = project(phantom, a)
    moved = project(phantom, a, shifts=np.array([[3.0, -2.0], [-1.0, 4.0]]))
    assert np.allclose(moved[0], np.roll(base[0], (-2, 3), axis=(0, 1)), atol=1e-4)
    assert np.allclose(moved[1], np.roll(base[1], (4, -1), axis=(0, 1)), atol=1e-4)


def test_projector_batches_consistently(phantom):
    fp = FourierProjector(phantom)
    rots = random_rotations(50, np.random.default_rng(4))
    kx, ky = np.array([0.0, 3.0, -5.5]), np.array([0.0, 2.0, 7.25])
    assert np.allclose(fp.slices(rots, kx, ky, batch_points=7), fp.slices(rots, kx, ky), atol=1e-4)


def test_non_cubic_volume_is_rejected():
    with pytest.raises(VolumeShapeError):
        FourierProjector(np.zeros((8, 8, 10), dtype=np.float32))
