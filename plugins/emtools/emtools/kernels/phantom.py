"""Ground-truth volumes for simulations and tests.

Why synthetic: the only offline sources of real coordinates here are Debian packages
(``pymol-data``, ``python3-prody-tests``), which a Python distribution cannot declare as
a dependency, and the PyPI structure libraries ship no model files. So
:func:`make_phantom` builds a *protein-like* model instead: residue-sized Gaussian
pseudo-atoms laid out as α-helices (3.6 residues/turn, 1.5 Å rise, 2.3 Å radius) and
β-sheets (3.3 Å along strands, 4.8 Å between strands), packed into three domains of
different sizes and joined by loops of 3.8 Å steps. The random layout has no symmetry,
so refinement has no symmetry ambiguity, and the spectrum falls off like a protein's.
:func:`atoms_to_volume` and :func:`read_pdb_coordinates` take real coordinates when a
user has a PDB file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_ELECTRONS = {"H": 1, "C": 6, "N": 7, "O": 8, "S": 16, "P": 15}


class PdbParseError(ValueError):
    """A PDB file held no ATOM/HETATM records that could be read."""


def read_pdb_coordinates(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates ``(N, 3)`` in Å and electron counts ``(N,)`` of ATOM/HETATM records."""
    xyz: list[tuple[float, float, float]] = []
    weights: list[float] = []
    for line in Path(path).read_text(errors="replace").splitlines():
        if not line.startswith(("ATOM", "HETATM")) or len(line) < 54:
            continue
        try:
            xyz.append((float(line[30:38]), float(line[38:46]), float(line[46:54])))
        except ValueError:
            continue
        element = line[76:78].strip().upper() if len(line) >= 78 else ""
        element = element or line[12:16].strip()[:1].upper()
        weights.append(float(_ELECTRONS.get(element, 6)))
    if not xyz:
        raise PdbParseError(f"{path}: no ATOM/HETATM coordinates found")
    return np.asarray(xyz), np.asarray(weights)


def atoms_to_volume(
    coords_a: np.ndarray,
    box: int,
    pixel_size_a: float,
    sigma_a: float = 2.0,
    weights: np.ndarray | None = None,
    center: bool = True,
) -> np.ndarray:
    """Sum of isotropic Gaussians at ``coords_a`` (Å, columns x, y, z) on a ``box³`` grid.

    ``center`` moves the centroid to the box centre (voxel ``box // 2``). Each Gaussian is
    evaluated on its ±3σ neighbourhood only, in one vectorised pass over all atoms.
    """
    c = np.asarray(coords_a, dtype=np.float64)
    w = np.ones(len(c)) if weights is None else np.asarray(weights, dtype=np.float64)
    if center:
        c = c - c.mean(axis=0)
    pos = c / pixel_size_a + box // 2  # voxel units, (x, y, z)
    sig = max(sigma_a / pixel_size_a, 0.35)  # below ~1/3 voxel a Gaussian aliases badly
    half = int(np.ceil(3 * sig))
    off = np.arange(-half, half + 1)
    base = np.rint(pos).astype(np.int64)
    vol = np.zeros((box, box, box), dtype=np.float64)
    d = np.stack(np.meshgrid(off, off, off, indexing="ij"), axis=-1).reshape(-1, 3)  # (K, 3)
    idx = base[:, None, :] + d[None]  # (N, K, 3) in (x, y, z)
    r2 = ((idx - pos[:, None, :]) ** 2).sum(-1)
    val = w[:, None] * np.exp(-0.5 * r2 / (sig * sig))
    ok = np.all((idx >= 0) & (idx < box), axis=-1)
    flat = (idx[..., 2] * box + idx[..., 1]) * box + idx[..., 0]
    np.add.at(vol.reshape(-1), flat[ok], val[ok])
    return vol.astype(np.float32)


def _frame(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    return q


def _helix(rng: np.random.Generator, n_res: int) -> np.ndarray:
    i = np.arange(n_res)
    t = np.deg2rad(100.0) * i
    local = np.stack([2.3 * np.cos(t), 2.3 * np.sin(t), 1.5 * i - 0.75 * n_res], axis=-1)
    return local @ _frame(rng).T


def _sheet(rng: np.random.Generator, n_strands: int, n_res: int) -> np.ndarray:
    s, i = np.meshgrid(np.arange(n_strands), np.arange(n_res), indexing="ij")
    pleat = 0.9 * (-1.0) ** i
    local = np.stack(
        [3.3 * i - 1.65 * n_res, 4.8 * s - 2.4 * n_strands, pleat + 0.3 * s * s], axis=-1
    ).reshape(-1, 3)
    return local @ _frame(rng).T


def _loop(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = max(1, int(np.linalg.norm(b - a) / 3.8))
    t = np.linspace(0, 1, n + 2)[1:-1, None]
    bulge = np.sin(np.pi * t) * rng.normal(0, 3.0, 3)
    return a + t * (b - a) + bulge


def protein_like_coordinates(radius_a: float, seed: int) -> np.ndarray:
    """Pseudo-atom coordinates (Å, centred) of a random three-domain protein-like model
    that fits in a sphere of ``radius_a``."""
    rng = np.random.default_rng(seed)
    centers = np.array([[-0.35, -0.15, 0.1], [0.35, 0.0, -0.15], [0.0, 0.45, 0.3]]) * radius_a
    domain_r = np.array([0.5, 0.42, 0.32]) * radius_a
    pieces: list[np.ndarray] = []
    for ctr, dr in zip(centers, domain_r, strict=True):
        # ~0.0074 residues/Å³ (1.35 g/cm³ protein), ~14 residues per element
        n_elements = max(2, int(4.0 / 3.0 * np.pi * dr**3 * 0.0074 / 14.0))
        placed: list[np.ndarray] = []
        for _ in range(200 * n_elements):
            if len(placed) == n_elements:
                break
            where = ctr + rng.uniform(-1, 1, 3) * dr * 0.7
            if any(np.linalg.norm(where - p.mean(0)) < 7.0 for p in placed):
                continue
            if rng.random() < 0.6:
                elem = _helix(rng, int(rng.integers(8, 18)))
            else:
                elem = _sheet(rng, int(rng.integers(3, 5)), int(rng.integers(4, 7)))
            placed.append(elem + where)
        for elem in placed:
            if pieces:
                pieces.append(_loop(pieces[-1][-1], elem[0], rng))
            pieces.append(elem)
    coords = np.concatenate(pieces)
    coords -= coords.mean(axis=0)
    r = np.linalg.norm(coords, axis=1).max()
    return coords * min(1.0, radius_a / r)


def make_phantom(box: int, pixel_size_a: float, seed: int = 0, diameter_fraction: float = 0.6) -> np.ndarray:
    """A float32 ``box³`` protein-like, asymmetric density (see module docstring).

    The model spans ``diameter_fraction`` of the box so that soft masks and shifts of a
    few pixels do not cut it. Values are scaled to a maximum of 1.
    """
    radius_a = 0.5 * diameter_fraction * box * pixel_size_a
    coords = protein_like_coordinates(radius_a, seed)
    vol = atoms_to_volume(coords, box, pixel_size_a, sigma_a=max(2.0, 0.6 * pixel_size_a))
    return (vol / vol.max()).astype(np.float32)
