"""Orientations: RELION ZYZ Euler angles, rotation matrices, sampling grids.

Convention (RELION's ``Euler_angles2matrix``): ``A = Rz(psi) · Ry(tilt) · Rz(rot)`` with
angles in degrees. A projection with matrix ``A`` is the line integral along z of the
volume rotated by ``A``; its central section is ``F(Aᵀ (kx, ky, 0))``, so the viewing
direction in volume coordinates is the third row of ``A``:
``(sin tilt cos rot, sin tilt sin rot, cos tilt)``.

All functions are vectorised over leading axes; matrices are float64 ``(N, 3, 3)``
because composing many small perturbations in float32 drifts measurably.
"""

from __future__ import annotations

import numpy as np


def euler_to_matrix(rot: np.ndarray | float, tilt: np.ndarray | float, psi: np.ndarray | float) -> np.ndarray:
    """RELION ZYZ Euler angles (degrees) to rotation matrices ``(N, 3, 3)``."""
    a, b, g = (np.deg2rad(np.atleast_1d(np.asarray(x, dtype=np.float64))) for x in (rot, tilt, psi))
    a, b, g = np.broadcast_arrays(a, b, g)
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    m = np.empty(a.shape + (3, 3))
    m[..., 0, 0] = cg * cc - sg * sa
    m[..., 0, 1] = cg * cs + sg * ca
    m[..., 0, 2] = -cg * sb
    m[..., 1, 0] = -sg * cc - cg * sa
    m[..., 1, 1] = -sg * cs + cg * ca
    m[..., 1, 2] = sg * sb
    m[..., 2, 0] = sc
    m[..., 2, 1] = ss
    m[..., 2, 2] = cb
    return m


def matrix_to_euler(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotation matrices ``(..., 3, 3)`` to RELION Euler angles (rot, tilt, psi) in degrees.

    Tilt is returned in [0, 180]; at the poles (tilt 0 or 180) rot is set to 0 and the
    whole in-plane angle goes to psi, as RELION does.
    """
    m = np.asarray(m, dtype=np.float64)
    sb = np.hypot(m[..., 0, 2], m[..., 1, 2])
    regular = sb > 16 * np.finfo(np.float64).eps
    rot = np.where(regular, np.arctan2(m[..., 2, 1], m[..., 2, 0]), 0.0)
    tilt = np.arctan2(sb, m[..., 2, 2])
    psi_regular = np.arctan2(m[..., 1, 2], -m[..., 0, 2])
    psi_pole = np.where(
        m[..., 2, 2] > 0, np.arctan2(-m[..., 1, 0], m[..., 0, 0]), np.arctan2(m[..., 1, 0], -m[..., 0, 0])
    )
    psi = np.where(regular, psi_regular, psi_pole)
    return np.rad2deg(rot), np.rad2deg(tilt), np.rad2deg(psi)


def rotation_z(angle_deg: np.ndarray | float) -> np.ndarray:
    """Rotations about z (in-plane), ``(N, 3, 3)``; ``rotation_z(psi) @ A`` adds psi to A."""
    return euler_to_matrix(0.0, 0.0, angle_deg)


def quaternions_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(N, 4)`` as (w, x, y, z) to rotation matrices ``(N, 3, 3)``."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    m = np.empty(q.shape[:-1] + (3, 3))
    m[..., 0, 0] = 1 - 2 * (y * y + z * z)
    m[..., 0, 1] = 2 * (x * y - z * w)
    m[..., 0, 2] = 2 * (x * z + y * w)
    m[..., 1, 0] = 2 * (x * y + z * w)
    m[..., 1, 1] = 1 - 2 * (x * x + z * z)
    m[..., 1, 2] = 2 * (y * z - x * w)
    m[..., 2, 0] = 2 * (x * z - y * w)
    m[..., 2, 1] = 2 * (y * z + x * w)
    m[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return m


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation vectors ``(N, 3)`` (axis times angle in radians) to matrices (Rodrigues)."""
    v = np.atleast_2d(np.asarray(rotvec, dtype=np.float64))
    angle = np.linalg.norm(v, axis=-1)
    half = 0.5 * angle
    # sin(x/2)/x written through sinc so that the zero rotation needs no special case
    scale = 0.5 * np.sinc(half / np.pi)
    q = np.concatenate([np.cos(half)[..., None], v * scale[..., None]], axis=-1)
    return quaternions_to_matrix(q)


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotations drawn uniformly from SO(3) (normalised Gaussian quaternions)."""
    return quaternions_to_matrix(rng.standard_normal((n, 4)))


def angular_distance_deg(m1: np.ndarray, m2: np.ndarray) -> np.ndarray:
    """Angle (degrees) of the rotation taking ``m1`` to ``m2``, elementwise over N."""
    trace = np.einsum("...ij,...ij->...", m1, m2)
    return np.rad2deg(np.arccos(np.clip(0.5 * (trace - 1.0), -1.0, 1.0)))


def fibonacci_directions(n: int) -> np.ndarray:
    """``n`` near-uniform unit vectors on the sphere (Fibonacci lattice), ``(n, 3)``."""
    i = np.arange(n, dtype=np.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + np.sqrt(5.0)) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


def directions_for_step(step_deg: float, hemisphere: bool = False) -> np.ndarray:
    """Fibonacci directions whose mean spacing is about ``step_deg`` (whole sphere).

    ``hemisphere=True`` keeps z >= 0 only, which suffices for 2D templates where a view
    and its opposite are mirror images; 3D matching of chiral maps needs the sphere.
    """
    step = np.deg2rad(step_deg)
    n = max(2, int(np.ceil(4.0 * np.pi / (step * step))))
    d = fibonacci_directions(n)
    return d[d[:, 2] >= 0] if hemisphere else d


def direction_to_rot_tilt(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit viewing directions ``(N, 3)`` to RELION (rot, tilt) in degrees."""
    rot = np.rad2deg(np.arctan2(d[:, 1], d[:, 0]))
    tilt = np.rad2deg(np.arccos(np.clip(d[:, 2], -1.0, 1.0)))
    return rot, tilt


def orientation_grid(step_deg: float) -> np.ndarray:
    """Global orientation grid, ``(n_dirs * n_psi, 3, 3)``: directions × in-plane angles.

    The grid has about ``step_deg`` spacing both between viewing directions and in psi,
    the sampling that HEALPix order k with its matching psi step gives in RELION.
    """
    rot, tilt = direction_to_rot_tilt(directions_for_step(step_deg))
    n_psi = max(1, int(round(360.0 / step_deg)))
    psi = np.arange(n_psi) * (360.0 / n_psi)
    rr = np.repeat(rot, n_psi)
    tt = np.repeat(tilt, n_psi)
    pp = np.tile(psi, rot.size)
    return euler_to_matrix(rr, tt, pp)


def local_perturbations(step_deg: float, radius_steps: float = 1.5) -> np.ndarray:
    """Small rotations on a cubic grid of rotation vectors, ``(M, 3, 3)``, identity first.

    Spacing ``step_deg`` in each axis, kept within ``radius_steps * step_deg`` of the
    identity; radius 1.5 gives 19 rotations (centre, 6 faces, 12 edges of the cube).
    Composing ``perturbations @ A`` explores a ball around ``A`` that is the same for
    every A, which the Euler-angle box is not (it degenerates near tilt 0).
    """
    n = int(np.floor(radius_steps))
    ax = np.arange(-n, n + 1, dtype=np.float64)
    g = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), axis=-1).reshape(-1, 3)
    g = g[np.linalg.norm(g, axis=1) <= radius_steps + 1e-9]
    g = g[np.argsort(np.linalg.norm(g, axis=1), kind="stable")]
    return axis_angle_to_matrix(g * np.deg2rad(step_deg))
