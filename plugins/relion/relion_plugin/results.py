"""Checking what RELION wrote, and reading the numbers we report from it.

RELION may exit 0 after a failure, so a map is accepted only when it is a complete MRC file
of the expected box with finite, non-constant values, and a resolution only when the model
or postprocess STAR file says one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.em.errors import EmFormatError, MrcFormatError
from orchestrator.em.mrc import read_header, read_stack, read_volume
from orchestrator.em.star import read_star
from relion_plugin.errors import RelionOutputError


def check_map(path: Path, box: int | None = None) -> np.ndarray:
    """The map at ``path`` after checking it is usable (RelionOutputError otherwise)."""
    if not path.is_file():
        raise RelionOutputError(f"RELION did not write the map {path}")
    try:
        data = read_volume(path)
    except MrcFormatError as exc:
        raise RelionOutputError(f"RELION wrote a broken map: {exc}") from None
    if box is not None and data.shape != (box, box, box):
        raise RelionOutputError(f"{path}: map is {data.shape[::-1]} voxels, expected {box}³")
    _check_values(path, data)
    return data


def check_stack(path: Path, count: int, box: int) -> None:
    """A particle stack RELION wrote: ``count`` images of ``box`` px, finite and not blank."""
    try:
        info = read_header(path)
        stack = read_stack(path)
    except MrcFormatError as exc:
        raise RelionOutputError(f"RELION wrote a broken stack: {exc}") from None
    if info.shape != (count, box, box):
        raise RelionOutputError(f"{path}: holds {info.describe()}, expected {count} images of {box}x{box}")
    _check_values(path, np.asarray(stack))


def _check_values(path: Path, data: np.ndarray) -> None:
    if not np.isfinite(data).all():
        raise RelionOutputError(f"{path}: holds NaN or infinite values")
    if float(np.std(data)) == 0.0:
        raise RelionOutputError(f"{path}: every value is {float(data.flat[0])} (an empty result)")


def _star(path: Path) -> Any:
    if not path.is_file():
        raise RelionOutputError(f"RELION did not write {path}")
    try:
        return read_star(path)
    except EmFormatError as exc:
        raise RelionOutputError(f"RELION wrote an unreadable STAR file: {exc}") from None


def model_resolution(model_star: Path) -> float:
    """``rlnCurrentResolution`` (Å) of a ``*_model.star`` file."""
    star = _star(model_star)
    value = star.pairs("model_general").get("rlnCurrentResolution")
    if not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
        raise RelionOutputError(f"{model_star}: no valid rlnCurrentResolution ({value!r})")
    return float(value)


def model_classes(model_star: Path) -> list[dict[str, Any]]:
    """One dict per class of a ``*_model.star``: reference image, distribution, resolution."""
    table = _star(model_star).loop("model_classes")
    return [
        {
            "reference": str(table["rlnReferenceImage"][i]),
            "distribution": float(table["rlnClassDistribution"][i]),
            "resolution": float(table["rlnEstimatedResolution"][i]),
        }
        for i in range(len(table["rlnReferenceImage"]))
    ]


def postprocess_resolution(postprocess_star: Path) -> tuple[float, float | None]:
    """(final resolution Å, B-factor used) from relion_postprocess's STAR file."""
    general = _star(postprocess_star).pairs("general")
    resolution = general.get("rlnFinalResolution")
    if not isinstance(resolution, int | float) or not np.isfinite(resolution) or resolution <= 0:
        raise RelionOutputError(f"{postprocess_star}: no valid rlnFinalResolution ({resolution!r})")
    bfactor = general.get("rlnBfactorUsedForSharpening")
    return float(resolution), float(bfactor) if isinstance(bfactor, int | float) else None


def fsc_resolution(fsc_star: Path, threshold: float = 0.143) -> float:
    """Resolution (Å) where an FSC table (``relion_image_handler --fsc``) first drops below ``threshold``.

    Interpolated between the shells around the crossing; Nyquist when it never drops.
    """
    table = _star(fsc_star).loop("fsc")
    freq = np.asarray(table["rlnResolution"], dtype=float)
    curve = np.asarray(table["rlnFourierShellCorrelation"], dtype=float)
    below = np.flatnonzero(curve[1:] < threshold) + 1
    if below.size == 0:
        return float(1.0 / freq[-1])
    i = int(below[0])
    f = freq[i - 1] + (curve[i - 1] - threshold) / (curve[i - 1] - curve[i]) * (freq[i] - freq[i - 1])
    return float(1.0 / f)


def volume_value(
    run_dir: Path,
    map_path: Path,
    pixel_size: float,
    box: int,
    *,
    resolution: float | None,
    half_maps: tuple[Path, Path] | None = None,
    symmetry: str = "C1",
    **extra: Any,
) -> dict[str, Any]:
    """The JSON value of a Volume output (paths relative to the run dir).

    The keys the native plugin's volumes have too: ``pixel_size_a``, ``box``,
    ``resolution_a`` (Å, None when unknown), ``half_maps``; and ``files`` (the map, what
    ``OutputRef.files()`` returns), ``symmetry``; ``extra`` adds protocol-specific facts
    (``mask``, ``bfactor``...).
    """

    def rel(path: Path) -> str:
        return os.path.relpath(path, run_dir)

    return {
        "files": [rel(map_path)],
        "pixel_size_a": float(pixel_size),
        "box": int(box),
        "resolution_a": None if resolution is None else round(float(resolution), 3),
        "half_maps": [rel(half_maps[0]), rel(half_maps[1])] if half_maps else None,
        "symmetry": symmetry,
        **extra,
    }
