"""Our particle sets -> RELION -> our particle sets, compared number by number.

RELION's own programs read the STAR file we export (relion_star_handler rewrites it
through RELION's metadata tables; relion_reconstruct reads the images it names, by
absolute path) and what RELION writes comes back with angles, shifts, classes and half
sets intact.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from relion_plugin.particle_sets import load_particles, optics_to_properties
from relion_plugin.results import check_map
from relion_plugin.star_exchange import POSE_3D, export_particles, merge_relion_particles, read_relion_particles
from relion_testdata import SimulatedParticles, require_relion

from orchestrator.objects.em import Optics
from orchestrator.project import Project
from orchestrator.protocol import StepContext
from orchestrator.store.set_files import export_set, exported_set_path
from orchestrator.worker.set_sources import ExportedSetSource

pytestmark = pytest.mark.integration


def relion(*args: str, cwd: Path) -> str:
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout + done.stderr


def stored_set(tmp_path: Path, sim: SimulatedParticles) -> tuple[StepContext, int, dict[str, np.ndarray]]:
    """The simulated particles (with poses, classes, half sets) as a set in a project store.

    The step reads it as a step on a host without the store would: from the file the
    scheduler exports (``Input/sets/set_<id>.npz``) through the context's set source.
    """
    project = Project.create(tmp_path / "proj")
    columns = dict(sim.columns)
    n = sim.count
    columns["class_id"] = (np.arange(n) % 3 + 1).astype(np.int32)
    columns["subset"] = (np.arange(n) % 2 + 1).astype(np.int8)
    columns["image_path"] = columns["image_path"].astype(object)
    with project.open_store() as store:
        item_set = store.create_set("sim", "Particle", properties={"optics": optics_to_properties([sim.optics])})
        item_set.append_columns(columns)
        item_set.close()
        run_dir = tmp_path / "proj" / "runs" / "check"
        run_dir.mkdir(parents=True)
        export_set(item_set, exported_set_path(run_dir / "Input/sets", item_set.id))
    ctx = StepContext(project.path, 0, run_dir, "check", run_dir / "check.log",
                      sets=ExportedSetSource(run_dir / "Input/sets"))
    return ctx, item_set.id, columns


def test_relion_reads_our_export_and_we_read_relion_back(tmp_path: Path, small_particles: SimulatedParticles) -> None:
    require_relion("relion_star_handler", "relion_reconstruct")
    ctx, set_id, original = stored_set(tmp_path, small_particles)
    particles = load_particles(ctx, set_id, str(small_particles.folder))
    assert particles.count == small_particles.count and particles.box == small_particles.box
    star = export_particles(particles, ctx.path("Input/particles.star"))

    # RELION parses our file into its tables and writes it again: no complaint, every row.
    said = relion(
        "relion_star_handler",
        "--i",
        str(star),
        "--o",
        "rewritten.star",
        "--select",
        "rlnClassNumber",
        "--minval",
        "1",
        "--maxval",
        "3",
        cwd=ctx.run_dir,
    )
    assert "warning" not in said.lower() and "error" not in said.lower()
    # ...and reads the images it names (absolute paths into the source folder).
    said = relion("relion_reconstruct", "--i", str(star), "--o", "check.mrc", "--ctf", cwd=ctx.run_dir)
    assert "warning" not in said.lower()
    check_map(ctx.path("check.mrc"), small_particles.box)

    back = read_relion_particles(ctx.path("rewritten.star"), expected_rows=small_particles.count)
    merged = merge_relion_particles(particles.columns, back, (*POSE_3D, "class_id", "subset"), where="rewritten")
    order = np.argsort(merged["id"])
    for name in ("rot", "tilt", "psi"):
        np.testing.assert_allclose(merged[name][order], original[name], atol=2e-3, err_msg=name)
    for name in ("shift_x", "shift_y"):  # RELION keeps Å with 6 decimals: 1e-6 Å / 4 Å per px
        np.testing.assert_allclose(merged[name][order], original[name], atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(merged["class_id"][order], original["class_id"])
    np.testing.assert_array_equal(merged["subset"][order], original["subset"])
    np.testing.assert_array_equal(merged["defocus_u"][order], original["defocus_u"])  # ours, untouched


def test_a_set_with_two_optics_groups_is_exported_per_group(
    tmp_path: Path, small_particles: SimulatedParticles
) -> None:
    require_relion("relion_star_handler")
    ctx, set_id, original = stored_set(tmp_path, small_particles)
    second = Optics(2, "second", 200.0, 2.0, 0.07, small_particles.pixel_size, small_particles.box)
    with Project.load(tmp_path / "proj").open_store() as store:
        groups = (np.arange(small_particles.count) % 2 + 1).astype(np.int16)
        item_set = store.create_set(
            "two", "Particle", properties={"optics": optics_to_properties([small_particles.optics, second])}
        )
        item_set.append_columns({**original, "optics_group": groups})
        item_set.close()
        export_set(item_set, exported_set_path(ctx.run_dir / "Input/sets", item_set.id))
    particles = load_particles(ctx, item_set.id, str(small_particles.folder))
    star = export_particles(particles, ctx.path("two.star"))
    relion(
        "relion_star_handler",
        "--i",
        str(star),
        "--o",
        "group2.star",
        "--select",
        "rlnOpticsGroup",
        "--minval",
        "2",
        "--maxval",
        "2",
        cwd=ctx.run_dir,
    )
    back = read_relion_particles(ctx.path("group2.star"))
    assert len(back["id"]) == small_particles.count // 2 and set(back["optics_group"].tolist()) == {2}


def test_reference_is_rescaled_to_the_particles(tmp_path: Path) -> None:
    """An initial model at another pixel size and box goes through relion_image_handler."""
    require_relion("relion_image_handler")
    from emtools.kernels.phantom import make_phantom
    from relion_plugin.steps_refine import prepare_reference

    from orchestrator.em.mrc import read_header, write_volume

    write_volume(tmp_path / "fine.mrc", make_phantom(64, 2.0), 2.0)
    ctx = StepContext(tmp_path, 0, tmp_path / "run", "refine", tmp_path / "run" / "refine.log")
    ctx.run_dir.mkdir()
    rescaled = prepare_reference(ctx, str(tmp_path / "fine.mrc"), 32, 4.0)
    info = read_header(rescaled)
    assert rescaled == str(ctx.path("Input/reference.mrc"))
    assert info.shape == (32, 32, 32) and info.voxel_size[0] == pytest.approx(4.0, rel=1e-3)
    assert prepare_reference(ctx, rescaled, 32, 4.0) == rescaled  # already right: used as is
