"""Euler angles, rotation matrices and orientation grids."""

import numpy as np
from emtools.kernels.geometry import (
    angular_distance_deg,
    euler_to_matrix,
    local_perturbations,
    matrix_to_euler,
    orientation_grid,
    random_rotations,
)
from emtools.kernels.xp import get_xp, to_numpy


def test_euler_round_trip_and_orthonormality():
    rng = np.random.default_rng(0)
    rot, tilt, psi = rng.uniform(-180, 180, 500), rng.uniform(0, 180, 500), rng.uniform(-180, 180, 500)
    m = euler_to_matrix(rot, tilt, psi)
    assert np.allclose(m @ np.swapaxes(m, 1, 2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(m), 1.0)
    m2 = euler_to_matrix(*matrix_to_euler(m))
    assert np.allclose(m, m2, atol=1e-9)


def test_relion_convention_viewing_direction_is_third_row():
    m = euler_to_matrix(30.0, 60.0, 10.0)[0]
    d = np.array([np.sin(np.pi / 3) * np.cos(np.pi / 6), np.sin(np.pi / 3) * np.sin(np.pi / 6), 0.5])
    assert np.allclose(m[2], d)
    # psi is a final rotation about z: A(rot, tilt, psi) = Rz(psi) A(rot, tilt, 0)
    assert np.allclose(euler_to_matrix(0, 0, 10.0)[0] @ euler_to_matrix(30, 60, 0)[0], m)


def test_pole_angles_are_folded_into_psi():
    rot, tilt, psi = matrix_to_euler(euler_to_matrix(25.0, 0.0, 15.0))
    assert np.allclose([rot[0], tilt[0], psi[0]], [0.0, 0.0, 40.0])


def test_random_rotations_are_uniform():
    m = random_rotations(20000, np.random.default_rng(1))
    # viewing directions uniform on the sphere: z uniform in [-1, 1]
    z = m[:, 2, 2]
    assert abs(z.mean()) < 0.02 and abs(np.mean(z * z) - 1 / 3) < 0.01


def test_orientation_grid_covers_so3_at_its_step():
    grid = orientation_grid(15.0)
    assert 4000 < len(grid) < 5000
    probe = random_rotations(200, np.random.default_rng(2))
    nearest = np.array([angular_distance_deg(grid, p[None]).min() for p in probe])
    assert nearest.max() < 15.0  # every rotation is within one step of a grid point


def test_local_perturbations():
    p = local_perturbations(2.0)
    assert len(p) == 19 and np.allclose(p[0], np.eye(3))
    d = angular_distance_deg(p, np.eye(3)[None])
    assert np.isclose(d[1:7], 2.0).all() and d.max() < 2.0 * 1.5 + 1e-9


def test_array_module_switch_falls_back_to_numpy():
    xp = get_xp(use_gpu=True)  # no CuPy here: numpy, not an error
    assert xp is np or xp.__name__ == "cupy"
    assert isinstance(to_numpy(xp.ones(3)), np.ndarray)
