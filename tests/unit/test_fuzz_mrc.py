"""Fuzzing the MRC reader: mutated and random headers, truncated files, headers that lie.

Every reader either returns data that matches the header or raises :class:`MrcFormatError`
naming the file; no raw exception, and no allocation sized from a header that the file's
real size has not confirmed (a header claiming 2^21 x 2^21 x 2^22 voxels costs nothing).
"""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fuzz_support import FUZZ, our_error_or_value
from hypothesis import event, given
from hypothesis import strategies as st

from orchestrator.em.errors import MrcFormatError
from orchestrator.em.mrc import (
    read_header,
    read_image,
    read_stack,
    read_stack_images,
    read_volume,
    write_stack,
    write_volume,
)

# Offsets of the int32 words of the 1024-byte MRC2014 header that say how to read the data.
INT_FIELDS = {
    "nx": 0, "ny": 4, "nz": 8, "mode": 12, "mx": 28, "my": 32, "mz": 36,
    "mapc": 64, "mapr": 68, "maps": 72, "ispg": 88, "nsymbt": 92, "nversion": 108, "nlabl": 220,
}
FLOAT_FIELDS = {"cella.x": 40, "cella.y": 44, "cella.z": 48, "dmin": 76, "dmax": 80, "rms": 216}
# What an MRC error names: a header field, the sizes the header promises, or the image asked for.
MRC_PLACE = re.compile(r"header|mode \S+|n[xyz]=|nsymbt|ispg=|image|MRC file")
MAX_ALLOCATION = 8 * 2**20  # every test file is a few KiB: 8 MiB is far above any honest read

READERS: dict[str, Callable[[Path], Any]] = {
    "read_header": read_header,
    "read_volume": read_volume,
    "read_image": read_image,
    "read_stack": read_stack,
    "read_stack_images": lambda path: read_stack_images(path, [1]),
}

interesting_ints = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from([0, 1, 2, 3, 4, 6, 12, 101, 401, 630, -1, 2**21, 2**22, 2**31 - 1, -(2**31)]),
)
interesting_floats = st.floats(width=32, allow_nan=True, allow_infinity=True)


def _base_file(path: Path, shape: tuple[int, int, int], stack: bool) -> bytes:
    data = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    if stack:
        write_stack(path, data, pixel_size=1.5)
    else:
        write_volume(path, data, voxel_size=1.5)
    return path.read_bytes()


def _check_readers(path: Path) -> None:
    """Every reader returns or raises MrcFormatError naming the file, within the allocation cap."""
    for name, reader in READERS.items():
        tracemalloc.start()
        try:
            outcome = our_error_or_value(lambda reader=reader: reader(path), MrcFormatError, [str(path)])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < MAX_ALLOCATION, f"{name} allocated {peak} bytes for a {path.stat().st_size}-byte file"
        if isinstance(outcome, MrcFormatError):  # it says which part of the header does not fit
            assert MRC_PLACE.search(str(outcome)), f"{name}: names no header field or size: {outcome}"
        event(f"{name}: {'refused' if isinstance(outcome, MrcFormatError) else 'read'}")
        if isinstance(outcome, np.ndarray):
            assert outcome.nbytes <= path.stat().st_size, f"{name} returned more data than the file holds"


@FUZZ
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)),
    stack=st.booleans(),
    ints=st.dictionaries(st.sampled_from(sorted(INT_FIELDS)), interesting_ints, max_size=4),
    floats=st.dictionaries(st.sampled_from(sorted(FLOAT_FIELDS)), interesting_floats, max_size=2),
    swap=st.booleans(),
    tail=st.one_of(st.none(), st.integers(-200, 200)),
)
def test_mutated_headers_give_mrc_errors(
    tmp_path: Path, shape: tuple[int, int, int], stack: bool, ints: dict[str, int],
    floats: dict[str, float], swap: bool, tail: int | None,
) -> None:
    path = tmp_path / "fuzz.mrc"
    raw = bytearray(_base_file(path, shape, stack))
    order = ">" if swap else "<"
    for field, value in ints.items():
        raw[INT_FIELDS[field]:INT_FIELDS[field] + 4] = np.array(value, dtype=f"{order}i4").tobytes()
    for field, value in floats.items():
        raw[FLOAT_FIELDS[field]:FLOAT_FIELDS[field] + 4] = np.array(value, dtype=f"{order}f4").tobytes()
    if tail is not None:  # cut the data short or pad it
        raw = raw[: max(0, len(raw) + tail)] if tail < 0 else raw + bytes(tail)
    path.write_bytes(bytes(raw))
    _check_readers(path)


@FUZZ
@given(header=st.binary(min_size=1024, max_size=1024), data=st.binary(max_size=512),
       magic=st.booleans())
def test_random_headers_give_mrc_errors(tmp_path: Path, header: bytes, data: bytes, magic: bool) -> None:
    raw = bytearray(header)
    if magic:  # past the identifier check, into the fields
        raw[208:216] = b"MAP DA\x00\x00"
    path = tmp_path / "random.mrc"
    path.write_bytes(bytes(raw) + data)
    _check_readers(path)


@FUZZ
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)), stack=st.booleans(),
       keep=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_files_give_mrc_errors(
    tmp_path: Path, shape: tuple[int, int, int], stack: bool, keep: float
) -> None:
    path = tmp_path / "cut.mrcs"
    raw = _base_file(path, shape, stack)
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(MrcFormatError) as caught:
        read_volume(path)
    assert str(path) in str(caught.value)
    _check_readers(path)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_header_claiming_2_to_the_64_voxels_is_refused_before_any_allocation(tmp_path: Path, reader: str) -> None:
    """2^21 x 2^21 x 2^22 float32 voxels: the voxel count wraps to 0 in int64 arithmetic."""
    path = tmp_path / "huge.mrc"
    raw = bytearray(_base_file(path, (2, 2, 2), stack=False))
    raw[0:12] = np.array([2**21, 2**21, 2**22], dtype="<i4").tobytes()
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        with pytest.raises(MrcFormatError) as caught:
            READERS[reader](path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_ALLOCATION
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "2097152x2097152x4194304" in message and "truncated" in message
    assert str(2**21 * 2**21 * 2**22 * 4) in message  # the bytes the header promises, not a wrapped 0


@FUZZ
@given(name=st.text(min_size=1, max_size=300))
def test_any_file_name_gives_an_mrc_error(tmp_path: Path, name: str) -> None:
    """Names come from STAR files (``000001@NAME``): NUL, 300 characters, lone surrogates."""
    path = tmp_path / name
    for reader_name, reader in READERS.items():
        with pytest.raises(MrcFormatError) as caught:
            reader(path)
        message = str(caught.value)
        assert str(path) in message or repr(str(path)) in message, f"{reader_name}: {message}"
