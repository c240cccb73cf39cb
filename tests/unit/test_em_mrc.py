"""MRC reading and writing: round trips, RELION-written files, and every broken file as MrcFormatError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.em.errors import MrcFormatError
from orchestrator.em.mrc import (
    read_header,
    read_image,
    read_stack,
    read_stack_images,
    read_volume,
    write_image,
    write_stack,
    write_volume,
)
from orchestrator.errors import OrchestratorError

RELION_DATA = Path(__file__).parent.parent / "data" / "relion"


@pytest.fixture
def stack_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(0).standard_normal((5, 8, 6)).astype(np.float32)
    path = write_stack(tmp_path / "particles.mrcs", data, pixel_size=1.5)
    return path, data


def test_volume_round_trip_keeps_data_and_voxel_size(tmp_path: Path) -> None:
    volume = np.random.default_rng(1).standard_normal((4, 6, 8)).astype(np.float32)
    path = write_volume(tmp_path / "map.mrc", volume, voxel_size=2.25)
    assert np.array_equal(read_volume(path), volume)
    info = read_header(path)
    assert info.shape == (4, 6, 8)
    assert info.voxel_size == (2.25, 2.25, 2.25)
    assert info.mode == 2 and info.dtype == np.float32
    assert not info.is_stack
    assert [p.name for p in tmp_path.iterdir()] == ["map.mrc"]  # no temporary file left behind


def test_float64_is_stored_as_float32_and_int64_is_refused(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "map.mrc", np.ones((2, 2, 2)), voxel_size=1.0)
    assert read_volume(path).dtype == np.float32
    with pytest.raises(MrcFormatError, match="cannot store int64"):
        write_volume(tmp_path / "bad.mrc", np.ones((2, 2, 2), dtype=np.int64), voxel_size=1.0)


def test_image_round_trip(tmp_path: Path) -> None:
    image = np.arange(12, dtype=np.int16).reshape(3, 4)
    path = write_image(tmp_path / "mic.mrc", image, pixel_size=0.8)
    assert np.array_equal(read_image(path), image)
    assert read_header(path).voxel_size[0] == pytest.approx(0.8)


def test_stack_is_memory_mapped_read_only_and_marked_as_stack(stack_file: tuple[Path, np.ndarray]) -> None:
    path, data = stack_file
    stack = read_stack(path)
    assert isinstance(stack, np.memmap)
    assert not stack.flags.writeable
    assert np.array_equal(stack, data)
    info = read_header(path)
    assert info.is_stack and info.n_images == 5 and info.space_group == 0
    with pytest.raises(MrcFormatError, match="expected a single 2D image"):
        read_image(path)


def test_read_stack_images_uses_one_based_indices_in_the_order_asked(
    stack_file: tuple[Path, np.ndarray],
) -> None:
    path, data = stack_file
    images = read_stack_images(path, [5, 1, 3])
    assert np.array_equal(images, data[[4, 0, 2]])
    with pytest.raises(MrcFormatError, match=r"image 6 requested but the stack holds 5 images"):
        read_stack_images(path, [1, 6])
    with pytest.raises(MrcFormatError, match="image 0 requested"):
        read_stack_images(path, [0])


def test_truncated_stack_names_file_and_sizes(tmp_path: Path) -> None:
    path = write_stack(tmp_path / "particles.mrcs", np.zeros((50, 16, 16), dtype=np.float32), 1.0)
    path.write_bytes(path.read_bytes()[: 1024 + 20000])
    with pytest.raises(MrcFormatError) as caught:
        read_stack(path)
    message = str(caught.value)
    assert message == (
        f"{path}: file is truncated: header says 16x16x50 float32 (51200 bytes of data) "
        "but only 20000 are present"
    )
    for reader in (read_volume, read_header):
        with pytest.raises(MrcFormatError, match="truncated"):
            reader(path)


def test_file_shorter_than_a_header(tmp_path: Path) -> None:
    path = tmp_path / "tiny.mrc"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(
        MrcFormatError, match=r"tiny\.mrc: not an MRC file, or truncated: shorter than the 1024"
    ):
        read_header(path)


def test_longer_file_than_header_says_is_corrupt(stack_file: tuple[Path, np.ndarray]) -> None:
    path, _ = stack_file
    path.write_bytes(path.read_bytes() + b"\0" * 10)
    with pytest.raises(MrcFormatError, match="10 bytes longer than its header says"):
        read_stack(path)


def test_non_mrc_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.mrc"
    path.write_text("hello\n" * 400)
    with pytest.raises(MrcFormatError, match=r"notes\.mrc: not an MRC file"):
        read_volume(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(MrcFormatError, match=r"missing\.mrcs: file does not exist"):
        read_stack(tmp_path / "missing.mrcs")
    with pytest.raises(MrcFormatError, match="is a directory"):
        read_header(tmp_path)


def test_corrupt_mode_and_machine_stamp(stack_file: tuple[Path, np.ndarray]) -> None:
    path, _ = stack_file
    raw = bytearray(path.read_bytes())
    bad_mode = bytearray(raw)
    bad_mode[12:16] = np.int32(77).tobytes()
    path.write_bytes(bytes(bad_mode))
    with pytest.raises(MrcFormatError, match="unsupported or corrupt data mode 77"):
        read_stack(path)
    bad_stamp = bytearray(raw)
    bad_stamp[212:216] = b"\x99\x99\x00\x00"
    path.write_bytes(bytes(bad_stamp))
    with pytest.raises(MrcFormatError, match="header is corrupt"):
        read_stack(path)


def test_errors_are_orchestrator_errors() -> None:
    assert issubclass(MrcFormatError, OrchestratorError)


def test_reads_stack_written_by_relion() -> None:
    path = RELION_DATA / "proj.mrcs"
    info = read_header(path)
    assert info.shape == (6, 24, 24) and info.dtype == np.float32
    assert info.voxel_size[:2] == (2.0, 2.0)
    images = read_stack_images(path, [1, 6])
    assert images.shape == (2, 24, 24)
    assert np.isfinite(images).all() and np.abs(images).max() > 0


def test_reads_volume_written_by_relion() -> None:
    volume = read_volume(RELION_DATA / "map_bin2.mrc")
    assert volume.shape == (12, 12, 12)
    assert read_header(RELION_DATA / "map_bin2.mrc").voxel_size == pytest.approx((4.0, 4.0, 4.0))
    # The map is a few Gaussian blobs around the centre: the densest voxel is near the middle.
    peak = np.unravel_index(np.argmax(volume), volume.shape)
    assert all(4 <= p <= 8 for p in peak)
