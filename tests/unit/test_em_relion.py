"""Particle sets <-> RELION particle STAR files, on our own files and on files RELION wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.em.errors import RelionConversionError, StarFormatError
from orchestrator.em.image_names import image_name, image_names, parse_image_name, parse_image_names
from orchestrator.em.optics import Optics
from orchestrator.em.particle_columns import PARTICLE_DTYPES
from orchestrator.em.relion import particles_to_star, star_to_particles
from orchestrator.em.star import read_star
from orchestrator.errors import UsageError

RELION_DATA = Path(__file__).parent.parent / "data" / "relion"
OPTICS = [
    Optics(
        group=1,
        name="opticsGroup1",
        voltage_kv=300.0,
        cs_mm=2.7,
        amplitude_contrast=0.1,
        pixel_size_a=1.06,
        image_size=256,
    ),
    Optics(
        group=2,
        name="krios_b",
        voltage_kv=200.0,
        cs_mm=0.01,
        amplitude_contrast=0.07,
        pixel_size_a=0.83,
        image_size=320,
    ),
]


def particle_set(n: int = 40) -> dict[str, np.ndarray]:
    """A particle set with every schema column filled with varied values."""
    rng = np.random.default_rng(11)
    f32 = np.float32
    columns = {
        "id": np.arange(1000, 1000 + n, dtype=np.int64),
        "image_index": rng.integers(1, 500, n).astype(np.int32),
        "image_path": np.array([f"Extract/job012/Movies/mic_{i % 4:03d}.mrcs" for i in range(n)]),
        "micrograph_id": (np.arange(n) % 4 + 7).astype(np.int32),
        "micrograph_name": np.array([f"MotionCorr/job002/Movies/mic_{i % 4:03d}.mrc" for i in range(n)]),
        "coord_x": rng.uniform(0, 4096, n).astype(f32),
        "coord_y": rng.uniform(0, 4096, n).astype(f32),
        "defocus_u": rng.uniform(5000, 30000, n).astype(f32),
        "defocus_v": rng.uniform(5000, 30000, n).astype(f32),
        "defocus_angle": rng.uniform(-180, 180, n).astype(f32),
        "ctf_resolution": rng.uniform(2.5, 6, n).astype(f32),
        "ctf_fit_quality": rng.uniform(0, 1, n).astype(f32),
        "rot": rng.uniform(-180, 180, n).astype(f32),
        "tilt": rng.uniform(0, 180, n).astype(f32),
        "psi": rng.uniform(-180, 180, n).astype(f32),
        "shift_x": rng.normal(0, 4, n).astype(f32),
        "shift_y": rng.normal(0, 4, n).astype(f32),
        "shift_z": np.zeros(n, dtype=f32),
        "class_id": rng.integers(1, 10, n).astype(np.int32),
        "subset": (np.arange(n) % 2 + 1).astype(np.int8),
        "optics_group": (np.arange(n) % 2 + 1).astype(np.int16),
        "enabled": np.ones(n, dtype=bool),
    }
    assert columns.keys() == PARTICLE_DTYPES.keys()
    return columns


def test_round_trip_keeps_every_column_exactly(tmp_path: Path) -> None:
    columns = particle_set()
    path = particles_to_star(columns, OPTICS, tmp_path / "particles.star")
    read, optics = star_to_particles(path)
    assert optics == OPTICS
    assert list(read) == list(PARTICLE_DTYPES)
    for name, values in columns.items():
        assert read[name].dtype.kind == PARTICLE_DTYPES[name].kind, name
        assert read[name].dtype.kind == "U" or read[name].dtype == PARTICLE_DTYPES[name], name
        assert np.array_equal(read[name], values), name


def test_shifts_are_written_in_angstrom_with_each_group_pixel_size(tmp_path: Path) -> None:
    columns = particle_set()
    particles = read_star(particles_to_star(columns, OPTICS, tmp_path / "p.star")).loop("particles")
    pixel = np.where(columns["optics_group"] == 1, 1.06, 0.83)
    assert np.allclose(particles["rlnOriginXAngst"], columns["shift_x"] * pixel, rtol=1e-6)
    assert np.allclose(particles["rlnOriginYAngst"], columns["shift_y"] * pixel, rtol=1e-6)
    assert "rlnOriginZAngst" not in particles  # 2D particles: no z shift column
    assert particles["rlnImageName"][0] == f"{columns['image_index'][0]:06d}@{columns['image_path'][0]}"
    assert np.array_equal(particles["rlnRandomSubset"], columns["subset"])
    assert np.array_equal(particles["rlnClassNumber"], columns["class_id"])
    assert np.array_equal(particles["rlnCtfMaxResolution"].astype(np.float32), columns["ctf_resolution"])
    assert np.array_equal(particles["rlnCtfFigureOfMerit"].astype(np.float32), columns["ctf_fit_quality"])


def test_unset_classes_and_subsets_are_not_written(tmp_path: Path) -> None:
    columns = particle_set(6)
    columns["class_id"][:] = 0
    columns["subset"][:] = 0
    columns["shift_z"][:] = 0
    columns["ctf_resolution"][:] = np.nan
    columns["ctf_fit_quality"][:] = np.nan
    particles = read_star(particles_to_star(columns, OPTICS, tmp_path / "p.star")).loop("particles")
    unset = {
        "rlnClassNumber",
        "rlnRandomSubset",
        "rlnOriginZAngst",
        "rlnCtfMaxResolution",
        "rlnCtfFigureOfMerit",
    }
    assert not unset & particles.keys()
    read, _ = star_to_particles(tmp_path / "p.star")
    assert not read["class_id"].any() and not read["subset"].any()
    assert np.isnan(read["ctf_resolution"]).all() and np.isnan(read["ctf_fit_quality"]).all()


def test_disabled_particles_are_left_out_unless_asked(tmp_path: Path) -> None:
    columns = particle_set(10)
    columns["enabled"][[2, 5]] = False
    read, _ = star_to_particles(particles_to_star(columns, OPTICS, tmp_path / "p.star"))
    assert read["id"].tolist() == np.delete(columns["id"], [2, 5]).tolist()
    assert read["enabled"].all()
    read, _ = star_to_particles(
        particles_to_star(columns, OPTICS, tmp_path / "p.star", include_disabled=True)
    )
    assert len(read["id"]) == 10


def test_missing_columns_get_defaults(tmp_path: Path) -> None:
    path = tmp_path / "minimal.star"
    path.write_text(
        "data_optics\nloop_\n_rlnOpticsGroup\n_rlnVoltage\n_rlnSphericalAberration\n_rlnAmplitudeContrast\n"
        "_rlnImagePixelSize\n1 300 2.7 0.1 1.2\n\n"
        "data_particles\nloop_\n_rlnImageName\n_rlnMicrographName\n"
        "000003@s.mrcs m1.mrc\n000001@s.mrcs m2.mrc\n000002@t.mrcs m1.mrc\n"
    )
    read, optics = star_to_particles(path)
    assert optics == [Optics(1, "opticsGroup1", 300.0, 2.7, 0.1, 1.2, 0)]
    assert read["id"].tolist() == [1, 2, 3]
    assert read["image_index"].tolist() == [3, 1, 2]
    assert read["image_path"].tolist() == ["s.mrcs", "s.mrcs", "t.mrcs"]
    assert read["micrograph_id"].tolist() == [1, 2, 1]  # numbered by first appearance
    assert read["optics_group"].tolist() == [1, 1, 1]
    assert not read["rot"].any() and not read["shift_x"].any() and read["enabled"].all()
    assert np.isnan(read["ctf_resolution"]).all()
    assert {name: values.dtype.kind for name, values in read.items()} == {
        name: dtype.kind for name, dtype in PARTICLE_DTYPES.items()
    }


def test_unknown_optics_group_is_an_error(tmp_path: Path) -> None:
    columns = particle_set(4)
    columns["optics_group"][:] = 3
    with pytest.raises(
        RelionConversionError, match=r"optics group\(s\) \[3\] that are not defined \(defined: 1, 2\)"
    ):
        particles_to_star(columns, OPTICS, tmp_path / "p.star")
    with pytest.raises(RelionConversionError, match="listed twice"):
        particles_to_star(particle_set(4), OPTICS + OPTICS[:1], tmp_path / "p.star")
    with pytest.raises(UsageError, match="start at 1"):
        Optics(0, "g", 300, 2.7, 0.1, 1.0)


def test_particle_file_without_optics_block_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.star"
    optics = (
        "data_optics\nloop_\n_rlnOpticsGroup\n_rlnVoltage\n_rlnSphericalAberration\n_rlnAmplitudeContrast\n"
    )
    path.write_text(optics + "1 300 2.7 0.1\n")
    with pytest.raises(
        StarFormatError, match=r"p\.star, data_optics \(line 1\): no column _rlnImagePixelSize"
    ):
        star_to_particles(path)
    path.write_text(optics + "_rlnImagePixelSize\n1 300 2.7 0.1 1.0\n")
    with pytest.raises(
        StarFormatError, match=r"p\.star: no data_particles block \(blocks present: data_optics\)"
    ):
        star_to_particles(path)


def test_text_in_a_numeric_column_is_named(tmp_path: Path) -> None:
    path = particles_to_star(particle_set(3), OPTICS, tmp_path / "p.star")
    path.write_text(path.read_text().replace(".mrcs 1000 ", ".mrcs abc ", 1))
    with pytest.raises(RelionConversionError, match=r"p\.star: column _rlnImageId holds text"):
        star_to_particles(path)


def test_empty_particle_set_round_trips(tmp_path: Path) -> None:
    read, optics = star_to_particles(particles_to_star(particle_set(0), OPTICS, tmp_path / "p.star"))
    assert optics == OPTICS
    assert all(len(values) == 0 for values in read.values())
    assert {name: values.dtype.kind for name, values in read.items()} == {
        name: dtype.kind for name, dtype in PARTICLE_DTYPES.items()
    }


# --- files RELION wrote ----------------------------------------------------------------------


def test_relion_project_output_matches_the_particles_we_gave_it() -> None:
    ours, our_optics = star_to_particles(RELION_DATA / "ours_angles.star")
    relion, relion_optics = star_to_particles(RELION_DATA / "proj.star")
    assert relion_optics == our_optics == [Optics(1, "opticsGroup1", 300.0, 2.7, 0.1, 2.0, 24)]
    assert relion["image_index"].tolist() == [1, 2, 3, 4, 5, 6]
    assert set(relion["image_path"].tolist()) == {"proj.mrcs"}
    assert relion["id"].tolist() == list(range(101, 107))
    for name in (
        "rot",
        "tilt",
        "psi",
        "shift_x",
        "shift_y",
        "defocus_u",
        "defocus_v",
        "defocus_angle",
        "coord_x",
        "coord_y",
        "class_id",
        "subset",
        "micrograph_id",
        "micrograph_name",
    ):
        assert np.array_equal(relion[name], ours[name]), name
    assert relion["shift_x"].tolist() == [0.0, 1.5, -2.0, 0.25, 3.0, -1.0]


def test_relion_star_handler_selection() -> None:
    read, _ = star_to_particles(RELION_DATA / "subset1.star")
    assert read["id"].tolist() == [101, 103, 105]
    assert set(read["subset"].tolist()) == {1}


def test_relion_30_file_reads_like_relion_31_conversion_of_it() -> None:
    old, old_optics = star_to_particles(RELION_DATA / "relion30_particles.star")
    new, new_optics = star_to_particles(RELION_DATA / "relion31_converted.star")
    assert new_optics == [
        Optics(1, "opticsGroup1", 300.0, 2.7, 0.1, 2.0, 24),
        Optics(2, "opticsGroup2", 200.0, 2.7, 0.07, 2.0, 24),
    ]
    assert old_optics == new_optics  # image size 24 found in proj.mrcs next to the file
    for name in PARTICLE_DTYPES:
        assert np.array_equal(old[name], new[name], equal_nan=old[name].dtype.kind == "f"), name
    assert new["optics_group"].tolist() == [1, 1, 1, 2, 2, 2]
    assert new["shift_x"].tolist() == [0.0, 1.5, -2.0, 0.25, 3.0, -1.0]  # 0.5 Å / 2 Å/px = 0.25 px


def test_relion_30_file_without_pixel_size_needs_one(tmp_path: Path) -> None:
    path = tmp_path / "old.star"
    path.write_text(
        "data_\nloop_\n_rlnImageName\n_rlnVoltage\n_rlnSphericalAberration\n_rlnAmplitudeContrast\n_rlnOriginX\n"
        "000001@x.mrcs 300 2.7 0.1 1.5\n"
    )
    with pytest.raises(
        RelionConversionError, match=r"old\.star, data_: RELION 3\.0-style file .* pass pixel_size"
    ):
        star_to_particles(path)
    read, optics = star_to_particles(path, pixel_size=1.3)
    assert optics[0].pixel_size_a == 1.3 and read["shift_x"].tolist() == [1.5]


# --- image names -----------------------------------------------------------------------------


def test_image_name_both_ways() -> None:
    assert image_name(12, "Particles/stack.mrcs") == "000012@Particles/stack.mrcs"
    assert image_name(1234567, "s.mrcs") == "1234567@s.mrcs"
    assert parse_image_name("000012@Particles/stack.mrcs") == (12, "Particles/stack.mrcs")
    assert parse_image_name("single.mrc") == (1, "single.mrc")
    for bad in ("x@s.mrcs", "000000@s.mrcs", "12@"):
        with pytest.raises(RelionConversionError, match="not INDEX@PATH"):
            parse_image_name(bad)
    with pytest.raises(RelionConversionError, match="start at 1"):
        image_name(0, "s.mrcs")


def test_image_names_columns() -> None:
    names = image_names(np.array([1, 20, 300]), np.array(["a.mrcs", "b/c.mrcs", "d.mrcs"]))
    assert names.tolist() == ["000001@a.mrcs", "000020@b/c.mrcs", "000300@d.mrcs"]
    indices, paths = parse_image_names(np.append(names, "whole.mrc"))
    assert indices.dtype == np.int32 and indices.tolist() == [1, 20, 300, 1]
    assert paths.tolist() == ["a.mrcs", "b/c.mrcs", "d.mrcs", "whole.mrc"]
    with pytest.raises(RelionConversionError, match=r"row 2: image name 'x@b\.mrcs'"):
        parse_image_names(np.array(["000001@a.mrcs", "x@b.mrcs"]))
    with pytest.raises(RelionConversionError, match="row 1: image index 0"):
        image_names(np.array([0]), np.array(["a.mrcs"]))
