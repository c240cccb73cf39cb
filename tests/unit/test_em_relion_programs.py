"""RELION's own programs read what we write: STAR files with optics groups, MRC maps and stacks.

These start real RELION binaries (Debian's ``relion`` package, 3.1). Without them the tests
skip on a developer's machine; in CI (``CI`` set) a missing RELION is a failure, because CI is
where the project promises that RELION accepts our files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from infra.services import require

from orchestrator.em.mrc import read_header, read_stack, read_volume, write_stack, write_volume
from orchestrator.em.optics import Optics
from orchestrator.em.relion import particles_to_star, star_to_particles

pytestmark = pytest.mark.integration

RELION_DATA = Path(__file__).parent.parent / "data" / "relion"
OPTICS = [
    Optics(1, "opticsGroup1", 300.0, 2.7, 0.1, 2.0, 24),
    Optics(2, "second_scope", 200.0, 2.0, 0.07, 1.5, 24),
]


def relion(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run one RELION program; skip (or, in CI, fail) when it is not installed."""
    require(shutil.which(args[0]) is not None,
            f"{args[0]} is not installed (tests/infra/system-deps.sh relion: apt-get install relion openmpi-bin)")
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


def particles(n: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    f32 = np.float32
    return {
        "id": np.arange(1, n + 1),
        "image_index": np.arange(1, n + 1, dtype=np.int32),
        "image_path": np.array(["Extract/job003/stack.mrcs"] * n),
        "micrograph_id": (np.arange(n) // 4 + 1).astype(np.int32),
        "micrograph_name": np.array([f"Micrographs/m{i // 4}.mrc" for i in range(n)]),
        "coord_x": rng.uniform(0, 4000, n).astype(f32),
        "coord_y": rng.uniform(0, 4000, n).astype(f32),
        "defocus_u": rng.uniform(10000, 20000, n).astype(f32),
        "defocus_v": rng.uniform(10000, 20000, n).astype(f32),
        "defocus_angle": rng.uniform(0, 180, n).astype(f32),
        "ctf_resolution": rng.uniform(3, 6, n).astype(f32),
        "ctf_fit_quality": rng.uniform(0, 1, n).astype(f32),
        "rot": rng.uniform(-180, 180, n).astype(f32),
        "tilt": rng.uniform(0, 180, n).astype(f32),
        "psi": rng.uniform(-180, 180, n).astype(f32),
        "shift_x": rng.normal(0, 3, n).astype(f32),
        "shift_y": rng.normal(0, 3, n).astype(f32),
        "class_id": (np.arange(n) % 3 + 1).astype(np.int32),
        "subset": (np.arange(n) % 2 + 1).astype(np.int8),
        "optics_group": (np.arange(n) % 2 + 1).astype(np.int16),
    }


def test_relion_star_handler_reads_our_particles_and_optics(tmp_path: Path) -> None:
    ours = particles()
    particles_to_star(ours, OPTICS, tmp_path / "ours.star")
    relion(
        "relion_star_handler",
        "--i",
        "ours.star",
        "--o",
        "class2.star",
        "--select",
        "rlnClassNumber",
        "--minval",
        "2",
        "--maxval",
        "2",
        cwd=tmp_path,
    )
    read, optics = star_to_particles(tmp_path / "class2.star")
    assert optics == OPTICS
    keep = ours["class_id"] == 2
    assert read["id"].tolist() == ours["id"][keep].tolist()
    for name, values in ours.items():
        if values.dtype.kind == "f":  # RELION rewrites numbers with 6 decimals
            assert np.allclose(read[name], values[keep], rtol=1e-6, atol=2e-6), name
        else:
            assert np.array_equal(read[name], values[keep]), name


def test_relion_projects_our_map_along_our_angles(tmp_path: Path) -> None:
    relion_inputs = RELION_DATA / "make_inputs.py"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    subprocess.run([sys.executable, str(relion_inputs), "angles.star"], cwd=tmp_path, env=env, check=True)
    relion("relion_project", "--i", "map.mrc", "--ang", "angles.star", "--o", "proj", "--ctf", cwd=tmp_path)
    projected, optics = star_to_particles(tmp_path / "proj.star")
    assert optics == [Optics(1, "opticsGroup1", 300.0, 2.7, 0.1, 2.0, 24)]
    assert projected["image_index"].tolist() == [1, 2, 3, 4, 5, 6]
    stack = read_stack(tmp_path / "proj.mrcs")
    assert stack.shape == (6, 24, 24) and read_header(tmp_path / "proj.mrcs").voxel_size[0] == 2.0
    # The same RELION on the same inputs gives the projections stored with the fixtures.
    assert np.allclose(stack, read_stack(RELION_DATA / "proj.mrcs"), atol=1e-5)


def test_relion_image_handler_reads_our_stack_and_volume(tmp_path: Path) -> None:
    images = np.random.default_rng(2).standard_normal((3, 16, 16)).astype(np.float32)
    write_stack(tmp_path / "ours.mrcs", images, pixel_size=1.25)
    relion(
        "relion_image_handler",
        "--i",
        "ours.mrcs",
        "--o",
        "doubled.mrcs",
        "--multiply_constant",
        "2",
        cwd=tmp_path,
    )
    assert np.allclose(read_stack(tmp_path / "doubled.mrcs"), 2 * images, rtol=1e-6)
    volume = np.random.default_rng(3).standard_normal((8, 8, 8)).astype(np.float32)
    write_volume(tmp_path / "ours.mrc", volume, voxel_size=3.0)
    relion(
        "relion_image_handler",
        "--i",
        "ours.mrc",
        "--o",
        "halved.mrc",
        "--multiply_constant",
        "0.5",
        cwd=tmp_path,
    )
    assert np.allclose(read_volume(tmp_path / "halved.mrc"), volume / 2, rtol=1e-6)
    assert read_header(tmp_path / "halved.mrc").voxel_size == (3.0, 3.0, 3.0)
