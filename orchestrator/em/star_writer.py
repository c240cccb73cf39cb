"""Writing STAR files in RELION 3.1's layout, so that what :func:`read_star` returns round-trips.

A block whose values are all 1D arrays (or lists) is written as a loop, one whose values are
all scalars as key-value pairs, an empty one as a bare ``data_`` header. The rows of a loop are
formatted by :mod:`orchestrator.em.star_rows`, chunk by chunk, so the text of a million-row
file is never held whole.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from orchestrator.em.errors import StarFormatError
from orchestrator.em.star_rows import quote, row_chunks

__all__ = ["write_star", "RELION_VERSION"]

RELION_VERSION = 30001
_NAME = re.compile(r"\S+")


def write_star(
    path: str | os.PathLike[str],
    blocks: Mapping[str, Mapping[str, Any]],
    *,
    version: int | None = RELION_VERSION,
    use_arrow: bool | None = None,
) -> Path:
    """Write ``blocks`` (block name -> columns or pairs) to ``path``; returns the path.

    ``version`` is written as RELION's ``# version 30001`` comment before each block (None
    omits it). ``use_arrow`` chooses the row formatter (None: pyarrow when installed). The
    file is written under a temporary name and renamed, so readers never see half a file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as out:
            for name, block in blocks.items():
                try:
                    _write_block(out, path, name, block, version, use_arrow)
                except StarFormatError as err:
                    if str(err).startswith(str(path)):
                        raise
                    raise StarFormatError(f"{path}, data_{name}: {err}") from err
        os.replace(tmp, path)
    except OSError as err:
        raise StarFormatError(f"{path}: cannot be written: {err.strerror or err}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_block(
    out: BinaryIO,
    path: Path,
    name: str,
    block: Mapping[str, Any],
    version: int | None,
    use_arrow: bool | None,
) -> None:
    if name and not _NAME.fullmatch(name):
        raise StarFormatError(f"{path}: block name {name!r} must not contain whitespace")
    for key in block:
        if not isinstance(key, str) or not _NAME.fullmatch(key) or key.startswith("_"):
            raise StarFormatError(
                f"{path}, data_{name}: label {key!r} must be non-empty, without whitespace or a leading _"
            )
    header = f"\n# version {version}\n" if version is not None else ""
    out.write(f"{header}\ndata_{name}\n\n".encode())
    arrays = [key for key, value in block.items() if _is_column(value)]
    if arrays and len(arrays) != len(block):
        scalar = next(key for key in block if key not in arrays)
        raise StarFormatError(
            f"{path}, data_{name}: mixes columns ({arrays[0]}) and single values ({scalar}); "
            "a block holds either a loop or key-value pairs"
        )
    if arrays:
        _write_loop(out, path, name, block, use_arrow)
    else:
        width = max((len(key) for key in block), default=0) + 1
        lines = "".join(f"_{key:<{width}} {_format_scalar(value)}\n" for key, value in block.items())
        out.write(lines.encode())
    out.write(b"\n")


def _write_loop(
    out: BinaryIO, path: Path, name: str, columns: Mapping[str, Any], use_arrow: bool | None
) -> None:
    arrays = {key: np.asarray(value) for key, value in columns.items()}
    lengths = {key: len(array) for key, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{key}={n}" for key, n in lengths.items())
        raise StarFormatError(f"{path}, data_{name}: columns differ in length ({detail})")
    labels = "".join(f"_{key} #{number}\n" for number, key in enumerate(arrays, start=1))
    out.write(f"loop_\n{labels}".encode())
    for chunk in row_chunks(list(arrays.values()), use_arrow=use_arrow):
        out.write(chunk)


def _is_column(value: Any) -> bool:
    return isinstance(value, np.ndarray | list | tuple) and np.ndim(value) == 1


def _format_scalar(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return quote(str(value))
