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
        return 1, name
    if not index.isdigit() or int(index) < 1 or not path:
        raise RelionConversionError(f"image name {name!r} is not INDEX@PATH with a 1-based INDEX")
    return int(index), path


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
    bad = ~np.char.isdigit(index_text) | (paths == "")
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise RelionConversionError(
            f"row {row + 1}: image name {str(names[row])!r} is not INDEX@PATH with a 1-based INDEX"
        )
    indices = index_text.astype(np.int64)
    if (indices < 1).any() or (indices > np.iinfo(np.int32).max).any():
        row = int(np.flatnonzero((indices < 1) | (indices > np.iinfo(np.int32).max))[0])
        raise RelionConversionError(f"row {row + 1}: image name {str(names[row])!r} has an invalid index")
    return indices.astype(np.int32), paths
