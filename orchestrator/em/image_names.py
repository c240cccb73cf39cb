"""RELION image names: ``000012@Particles/stack.mrcs`` is image 12 (1-based) of that stack.

The single-name functions are for messages and tests; the column functions do a million
names at numpy speed, which is what converting a particle set costs.
"""

from __future__ import annotations

import numpy as np

from orchestrator.em.errors import RelionConversionError

__all__ = ["image_name", "parse_image_name", "image_names", "parse_image_names"]

# RELION writes the index with at least six digits (its "%06d"); longer indices just grow.
_INDEX_DIGITS = 6
# Indices are int32 (the particle column's type): at most 2147483647, ten digits.
_MAX_INDEX = int(np.iinfo(np.int32).max)
_MAX_INDEX_DIGITS = len(str(_MAX_INDEX))
_FORM = "is not INDEX@PATH with a 1-based INDEX"
_RANGE = f"is outside 1..{_MAX_INDEX}"


def image_name(index: int, path: str) -> str:
    """``image_name(12, "Particles/stack.mrcs") == "000012@Particles/stack.mrcs"``."""
    if index < 1:
        raise RelionConversionError(f"image index {index} for {path}: indices in a stack start at 1")
    return f"{index:0{_INDEX_DIGITS}d}@{path}"


def parse_image_name(name: str) -> tuple[int, str]:
    """``"000012@Particles/stack.mrcs"`` -> ``(12, "Particles/stack.mrcs")``.

    A name without ``@`` is a file that holds one image, which is image 1 of it.
    """
    index, at, path = name.partition("@")
    if not at:
        if not name:
            raise RelionConversionError(f"image name {name!r} {_FORM}: it is empty")
        return 1, name
    # isascii: str.isdigit() also accepts "²" and "١", which int() refuses or reads differently.
    if not (index.isascii() and index.isdigit()) or not path:
        raise RelionConversionError(f"image name {_shown(name)} {_FORM}")
    stripped = index.lstrip("0")
    if len(stripped) > _MAX_INDEX_DIGITS or int(stripped or "0") > _MAX_INDEX or not stripped:
        raise RelionConversionError(f"image name {_shown(name)} {_FORM}: index {_shown(index)} {_RANGE}")
    return int(stripped), path


def image_names(indices: np.ndarray, paths: np.ndarray) -> np.ndarray:
    """Column version of :func:`image_name`: a str array of ``INDEX@PATH``."""
    indices = np.asarray(indices, dtype=np.int64)
    paths = np.asarray(paths, dtype=str)
    if indices.shape != paths.shape:
        raise RelionConversionError(
            f"{indices.shape[0]} image indices but {paths.shape[0]} image paths; they must pair up"
        )
    bad = np.flatnonzero(indices < 1)
    if bad.size:
        row = int(bad[0])
        raise RelionConversionError(
            f"row {row + 1}: image index {int(indices[row])} for {str(paths[row])}: indices start at 1"
        )
    if indices.size == 0:
        return np.array([], dtype=str)
    digits = np.char.zfill(indices.astype(str), _INDEX_DIGITS)
    return np.char.add(np.char.add(digits, "@"), paths)


def parse_image_names(names: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column version of :func:`parse_image_name`: (int32 indices, str paths)."""
    names = np.asarray(names, dtype=str)
    if names.size == 0:
        return np.array([], dtype=np.int32), np.array([], dtype=str)
    parts = np.char.partition(names, "@")
    index_text, at, paths = parts[:, 0], parts[:, 1], parts[:, 2]
    single = at == ""
    index_text = np.where(single, "1", index_text)
    paths = np.where(single, names, paths)
    malformed = ~np.char.isdigit(index_text) | ~_ascii(index_text) | (paths == "")
    # Leading zeros aside, more than ten digits cannot be an int32 index: refused before any
    # conversion, which would overflow int64 (or Python's 4,300-digit limit) on a hostile file.
    too_long = np.char.str_len(np.char.lstrip(index_text, "0")) > _MAX_INDEX_DIGITS
    indices = np.where(malformed | too_long, "0", index_text).astype(np.int64)
    out_of_range = ~malformed & (too_long | (indices < 1) | (indices > _MAX_INDEX))
    if malformed.any() or out_of_range.any():
        row = int(np.flatnonzero(malformed | out_of_range)[0])
        name = f"row {row + 1}: image name {_shown(str(names[row]))} {_FORM}"
        if malformed[row]:
            raise RelionConversionError(name)
        raise RelionConversionError(f"{name}: index {_shown(str(index_text[row]))} {_RANGE}")
    return indices.astype(np.int32), paths


def _ascii(texts: np.ndarray) -> np.ndarray:
    """Which strings of a numpy str array are pure ASCII (its UCS-4 code points all below 128)."""
    if texts.dtype.itemsize == 0:
        return np.ones(texts.shape, dtype=bool)
    codes = np.ascontiguousarray(texts).view(np.uint32).reshape(len(texts), -1)
    return np.asarray((codes < 128).all(axis=1))


def _shown(text: str) -> str:
    """A name as a message quotes it: whole when short, its ends when hostile-long."""
    return repr(text) if len(text) <= 80 else f"{text[:40]!r}...{text[-20:]!r} ({len(text)} characters)"
