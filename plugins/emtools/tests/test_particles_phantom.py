"""The synthetic ground truth: protein-like, centred, asymmetric."""

import numpy as np
from emtools.kernels.phantom import atoms_to_volume, make_phantom, read_pdb_coordinates


def test_phantom_is_deterministic_centred_and_inside_the_box():
    a = make_phantom(48, 3.0, seed=0)
    assert a.dtype == np.float32 and a.shape == (48, 48, 48) and a.max() == 1.0
    assert np.array_equal(a, make_phantom(48, 3.0, seed=0))
    assert not np.array_equal(a, make_phantom(48, 3.0, seed=1))
    zz, yy, xx = np.indices(a.shape) - 24
    w = a / a.sum()
    centroid = [(w * c).sum() for c in (xx, yy, zz)]
    assert np.all(np.abs(centroid) < 1.5)
    r = np.sqrt(xx**2 + yy**2 + zz**2)
    assert a[r > 0.42 * 48].max() < 0.05  # fits in the default refinement mask


def test_phantom_has_no_symmetry():
    a = make_phantom(48, 3.0, seed=0).astype(np.float64)
    a -= a.mean()

    def corr(b):
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    # two-fold axes along x, y, z and the mirror image (hand): measured 0.53-0.64, what
    # any compact globule gives at this resolution; a symmetric map would give 1.0
    c = [
        corr(np.roll(a[:, ::-1, ::-1], (1, 1), (1, 2))),
        corr(np.roll(a[::-1, :, ::-1], (1, 1), (0, 2))),
        corr(np.roll(a[::-1, ::-1, :], (1, 1), (0, 1))),
        corr(np.roll(a[::-1], 1, 0)),
    ]
    assert max(c) < 0.7


def test_atoms_from_a_pdb_file(tmp_path):
    pdb = tmp_path / "two.pdb"
    pdb.write_text(
        "ATOM      1  CA  ALA A   1      10.000  10.000  10.000  1.00  0.00           C\n"
        "HETATM    2  S   SO4 A   2      16.000  10.000  10.000  1.00  0.00           S\n"
    )
    xyz, w = read_pdb_coordinates(pdb)
    assert xyz.shape == (2, 3) and list(w) == [6.0, 16.0]
    vol = atoms_to_volume(xyz, 16, 1.0, sigma_a=1.0, weights=w)
    z, y, x = np.unravel_index(np.argmax(vol), vol.shape)
    # centroid at the centre voxel 8: the sulfur at +3 Å in x
    assert (z, y, x) == (8, 8, 11)
