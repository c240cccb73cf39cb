"""Particle sets <-> RELION 3.1 particle STAR files (a ``data_optics`` and a ``data_particles``).

Pure functions on numpy columns (see :mod:`orchestrator.em.particle_columns`). What changes on
the way, and why:

* shifts: ours are in pixels, RELION 3.1 stores ``rlnOriginXAngst`` in Å, so each particle's
  shift is multiplied by the pixel size of its optics group (same sign convention);
* image: our ``image_index`` + ``image_path`` are RELION's one ``rlnImageName``
  (``000012@Particles/stack.mrcs``);
* ``enabled``: RELION has no notion of a disabled particle, so disabled rows are left out
  when writing (unless asked) and every particle read is enabled;
* ``class_id`` 0, ``subset`` 0 and a NaN CTF resolution or fit quality mean "none", so those
  columns (and an all-zero z shift, and empty micrograph names) are written only when some
  particle has a value: RELION would read a 0 or a NaN there as a real value.

RELION 3.0 files (no optics table; rlnVoltage etc. on every row, shifts in pixels as
``rlnOriginX``, pixel size from rlnDetectorPixelSize and rlnMagnification) are read too: each
distinct set of optical values becomes one optics group.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from orchestrator.em.errors import MrcFormatError, RelionConversionError
from orchestrator.em.image_names import image_names, parse_image_names
from orchestrator.em.mrc import read_header
from orchestrator.em.optics import Optics
from orchestrator.em.particle_columns import PARTICLE_DTYPES, complete_particles
from orchestrator.em.star import StarFile, read_star, write_star
from orchestrator.errors import OrchestratorError

__all__ = ["particles_to_star", "star_to_particles", "optics_to_star", "star_to_optics"]

# Columns that map one to one (ours -> RELION's).
_DIRECT = {
    "id": "rlnImageId",
    "micrograph_id": "rlnMicrographId",
    "micrograph_name": "rlnMicrographName",
    "coord_x": "rlnCoordinateX",
    "coord_y": "rlnCoordinateY",
    "defocus_u": "rlnDefocusU",
    "defocus_v": "rlnDefocusV",
    "defocus_angle": "rlnDefocusAngle",
    "ctf_resolution": "rlnCtfMaxResolution",
    "ctf_fit_quality": "rlnCtfFigureOfMerit",
    "rot": "rlnAngleRot",
    "tilt": "rlnAngleTilt",
    "psi": "rlnAnglePsi",
    "class_id": "rlnClassNumber",
    "subset": "rlnRandomSubset",
    "optics_group": "rlnOpticsGroup",
}
# Written only when some particle has a value (see the module docstring).
_ONLY_WHEN_SET = (
    "class_id",
    "subset",
    "shift_z",
    "micrograph_id",
    "micrograph_name",
    "ctf_resolution",
    "ctf_fit_quality",
)
_SHIFTS = (("shift_x", "X"), ("shift_y", "Y"), ("shift_z", "Z"))


def particles_to_star(
    columns: Mapping[str, np.ndarray],
    optics: Sequence[Optics],
    path: str | os.PathLike[str],
    *,
    include_disabled: bool = False,
) -> Path:
    """Write a particle set as a RELION 3.1 particle STAR file; returns the path written.

    Missing columns are written with their defaults; rows with ``enabled`` False are left out
    unless ``include_disabled``. Every optics group the particles use must be in ``optics``.
    """
    particles = complete_particles(columns)
    if not include_disabled:
        keep = particles["enabled"]
        particles = {name: values[keep] for name, values in particles.items()}
    groups = _groups_by_number(optics)
    pixel_size = _pixel_sizes(particles["optics_group"], groups, where="the particle set")
    star: dict[str, np.ndarray] = {}
    if (particles["image_index"] > 0).any() or (particles["image_path"] != "").any():
        star["rlnImageName"] = image_names(particles["image_index"], particles["image_path"])
    for ours, theirs in _DIRECT.items():
        if ours not in _ONLY_WHEN_SET or _is_set(particles[ours]):
            star[theirs] = particles[ours]
    for ours, axis in _SHIFTS:
        if ours not in _ONLY_WHEN_SET or _is_set(particles[ours]):
            star[f"rlnOrigin{axis}Angst"] = particles[ours].astype(np.float64) * pixel_size
    return write_star(path, {"optics": optics_to_star(optics), "particles": star})


def star_to_particles(
    path: str | os.PathLike[str], *, pixel_size: float | None = None
) -> tuple[dict[str, np.ndarray], list[Optics]]:
    """Read a RELION particle STAR file (3.1, or 3.0 without optics) as (columns, optics).

    Columns the file lacks get their defaults. ``pixel_size`` (Å) is used only for a 3.0 file
    that does not say its pixel size (no rlnDetectorPixelSize/rlnMagnification).
    """
    star = read_star(path)
    if "optics" in star:
        optics = star_to_optics(star)
        rows = star.loop("particles")
        shift_scale = None  # rlnOriginXAngst: divide by each group's pixel size below
    else:
        optics, rows = _optics_from_rows(star, _only_loop(star), pixel_size)
        shift_scale = 1.0
    n = len(next(iter(rows.values()), ()))
    particles: dict[str, np.ndarray] = {}
    for ours, theirs in _DIRECT.items():
        if theirs in rows:
            particles[ours] = _typed(star, rows, theirs, PARTICLE_DTYPES[ours])
    if "rlnImageName" in rows:
        particles["image_index"], particles["image_path"] = _parse_names(star, rows["rlnImageName"])
    if "micrograph_id" not in particles and "micrograph_name" in particles:
        particles["micrograph_id"] = _number_by_first_appearance(particles["micrograph_name"])
    if "optics_group" not in particles:
        if len(optics) > 1:
            raise RelionConversionError(
                f"{star.path}: no rlnOpticsGroup column but {len(optics)} optics groups"
            )
        particles["optics_group"] = np.full(n, optics[0].group if optics else 1, dtype=np.int64)
    try:
        particles = (
            complete_particles(particles) if particles else complete_particles({"id": np.arange(1, n + 1)})
        )
    except RelionConversionError as err:
        raise RelionConversionError(f"{star.path}: {err}") from err
    particles.update(_shifts_in_pixels(star, rows, particles["optics_group"], optics, shift_scale))
    return particles, optics


def optics_to_star(optics: Sequence[Optics]) -> dict[str, np.ndarray]:
    """The ``data_optics`` loop for a list of optics groups."""
    _groups_by_number(optics)  # checks for duplicates
    return {
        "rlnOpticsGroupName": np.array([o.name for o in optics], dtype=str),
        "rlnOpticsGroup": np.array([o.group for o in optics], dtype=np.int64),
        "rlnVoltage": np.array([o.voltage_kv for o in optics], dtype=np.float64),
        "rlnSphericalAberration": np.array([o.cs_mm for o in optics], dtype=np.float64),
        "rlnAmplitudeContrast": np.array([o.amplitude_contrast for o in optics], dtype=np.float64),
        "rlnImagePixelSize": np.array([o.pixel_size_a for o in optics], dtype=np.float64),
        "rlnImageSize": np.array([o.image_size for o in optics], dtype=np.int64),
        "rlnImageDimensionality": np.full(len(optics), 2, dtype=np.int64),
    }


def star_to_optics(star: StarFile) -> list[Optics]:
    """The optics groups of a RELION 3.1 STAR file's ``data_optics`` block.

    Every value is checked against its column's meaning (group numbers 1..32767, finite
    optical constants, a whole image size), with an error naming the file and the column.
    """
    table = star.loop("optics")
    n = len(next(iter(table.values()), ()))
    star.column("optics", "rlnOpticsGroup")  # a missing column is named before anything else
    groups = _typed(star, table, "rlnOpticsGroup", PARTICLE_DTYPES["optics_group"], "optics")
    names = table.get("rlnOpticsGroupName", np.array([f"opticsGroup{g}" for g in groups]))
    sizes = (
        _typed(star, table, "rlnImageSize", np.dtype(np.int32), "optics")
        if "rlnImageSize" in table
        else np.zeros(n, dtype=np.int32)
    )
    optical = {
        label: _finite(star, table, label, "optics")
        for label in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize")
    }
    optics: list[Optics] = []
    for i in range(n):
        try:
            optics.append(
                Optics(
                    group=int(groups[i]),
                    name=str(names[i]),
                    voltage_kv=float(optical["rlnVoltage"][i]),
                    cs_mm=float(optical["rlnSphericalAberration"][i]),
                    amplitude_contrast=float(optical["rlnAmplitudeContrast"][i]),
                    pixel_size_a=float(optical["rlnImagePixelSize"][i]),
                    image_size=int(sizes[i]),
                )
            )
        except OrchestratorError as err:  # the data model's own checks (group numbers from 1)
            raise RelionConversionError(f"{star.path}, data_optics, row {i + 1}: _rlnOpticsGroup: {err}") from err
    try:
        _groups_by_number(optics)
    except RelionConversionError as err:
        raise RelionConversionError(f"{star.path}, data_optics: _rlnOpticsGroup: {err}") from err
    return optics


def _is_set(values: np.ndarray) -> bool:
    """Whether any value means something: not "", not 0, not NaN (ours for "not estimated")."""
    if values.dtype.kind == "U":
        return bool((values != "").any())
    if values.dtype.kind == "f":
        return bool((np.isfinite(values) & (values != 0)).any())
    return bool(values.any())


def _groups_by_number(optics: Sequence[Optics]) -> dict[int, Optics]:
    groups: dict[int, Optics] = {}
    for group in optics:
        if group.group in groups:
            raise RelionConversionError(f"optics group {group.group} is listed twice")
        groups[group.group] = group
    return groups


def _pixel_sizes(group_column: np.ndarray, groups: Mapping[int, Optics], where: str) -> np.ndarray:
    """Each particle's pixel size (Å), looked up through its optics group."""
    used = np.unique(group_column)
    unknown = [int(g) for g in used if int(g) not in groups]
    if unknown:
        listed = ", ".join(str(g) for g in sorted(groups)) or "none"
        raise RelionConversionError(
            f"{where}: particles use optics group(s) {unknown} that are not defined (defined: {listed})"
        )
    lookup = np.zeros(int(used.max(initial=0)) + 1, dtype=np.float64)
    for number in used:
        lookup[int(number)] = groups[int(number)].pixel_size_a
    return lookup[group_column.astype(np.int64)]


def _shifts_in_pixels(
    star: StarFile,
    rows: Mapping[str, np.ndarray],
    group_column: np.ndarray,
    optics: Sequence[Optics],
    scale: float | None,
) -> dict[str, np.ndarray]:
    """shift_x/y/z in pixels from rlnOrigin?Angst (3.1) or rlnOrigin? (3.0, pixels)."""
    shifts: dict[str, np.ndarray] = {}
    pixel_size: np.ndarray | None = None
    for ours, axis in _SHIFTS:
        if f"rlnOrigin{axis}Angst" in rows:
            if pixel_size is None:
                where = f"{star.path}, data_particles, column _rlnOpticsGroup"
                pixel_size = _pixel_sizes(group_column, _groups_by_number(optics), where=where)
                if (pixel_size <= 0).any():
                    raise RelionConversionError(
                        f"{star.path}: shifts (_rlnOrigin{axis}Angst) are in Å but an optics group has no "
                        "pixel size (_rlnImagePixelSize 0 or less)"
                    )
            values = _floats(star, rows, f"rlnOrigin{axis}Angst") / pixel_size
        elif f"rlnOrigin{axis}" in rows:
            values = _floats(star, rows, f"rlnOrigin{axis}") * (scale or 1.0)
        else:
            continue
        label = f"rlnOrigin{axis}Angst" if f"rlnOrigin{axis}Angst" in rows else f"rlnOrigin{axis}"
        shifts[ours] = _in_range(star, label, np.asarray(values, dtype=np.float64), PARTICLE_DTYPES[ours])
    return shifts


def _only_loop(star: StarFile) -> str:
    """The particle block of a file without optics: its one loop, or data_particles."""
    if "particles" in star.loops:
        return "particles"
    if len(star.loops) != 1:
        raise RelionConversionError(
            f"{star.path}: no data_optics block (not RELION 3.1) and {len(star.loops)} loops; "
            "cannot tell which one holds the particles"
        )
    return next(iter(star.loops))


def _optics_from_rows(
    star: StarFile, block: str, pixel_size: float | None
) -> tuple[list[Optics], dict[str, np.ndarray]]:
    """RELION 3.0: optics groups from the per-particle optical columns, plus rlnOpticsGroup."""
    rows = dict(star.loop(block))
    n = len(next(iter(rows.values()), ()))
    if "rlnDetectorPixelSize" in rows and "rlnMagnification" in rows:
        detector = _finite(star, rows, "rlnDetectorPixelSize", block)
        magnification = _finite(star, rows, "rlnMagnification", block)
        if (magnification <= 0).any():
            row = int(np.flatnonzero(magnification <= 0)[0])
            raise RelionConversionError(
                f"{star.path}, data_{block}, row {row + 1}: _rlnMagnification must be positive, "
                f"got {magnification[row]:g}"
            )
        pixel = detector * 1e4 / magnification
    elif "rlnImagePixelSize" in rows:
        pixel = _finite(star, rows, "rlnImagePixelSize", block)
    elif pixel_size is not None:
        pixel = np.full(n, pixel_size)
    else:
        raise RelionConversionError(
            f"{star.path}, data_{block}: RELION 3.0-style file (no data_optics) that does not give the "
            "pixel size (rlnDetectorPixelSize and rlnMagnification): pass pixel_size"
        )
    optical = np.stack(
        [
            _finite(star, rows, label, block)
            for label in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
        ]
        + [pixel],
        axis=1,
    )
    distinct, first, group_index = np.unique(optical, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # groups numbered in order of first appearance, as RELION does
    renumber = np.empty_like(order)
    renumber[order] = np.arange(1, len(order) + 1)
    size = _image_size(star, rows)
    optics = [
        Optics(
            group=int(renumber[k]),
            name=f"opticsGroup{int(renumber[k])}",
            voltage_kv=float(distinct[k, 0]),
            cs_mm=float(distinct[k, 1]),
            amplitude_contrast=float(distinct[k, 2]),
            pixel_size_a=float(distinct[k, 3]),
            image_size=size,
        )
        for k in order
    ]
    rows["rlnOpticsGroup"] = renumber[group_index.reshape(-1)]
    return optics, rows


def _image_size(star: StarFile, rows: Mapping[str, np.ndarray]) -> int:
    """Box size from the first particle's stack header, where it can be found (else 0).

    RELION paths are relative to the project directory, which is usually where the STAR
    file's job directory lives, so both the working directory and the file's own are tried.
    """
    if "rlnImageName" not in rows or len(rows["rlnImageName"]) == 0:
        return 0
    _, paths = _parse_names(star, rows["rlnImageName"][:1])
    for candidate in (Path(paths[0]), star.path.parent / paths[0]):
        try:
            if candidate.is_file():
                return read_header(candidate).shape[-1]
        except (MrcFormatError, OSError):  # unreadable or a name the system refuses (too long)
            return 0
    return 0


def _floats(
    star: StarFile, rows: Mapping[str, np.ndarray], label: str, block: str = "particles"
) -> np.ndarray:
    """A numeric column as float64, with an error naming the file and column if it holds text."""
    if label not in rows:
        star.column(block, label)  # raises the error that names file, block and column
    try:
        return np.asarray(rows[label], dtype=np.float64)
    except ValueError as err:
        raise RelionConversionError(
            f"{star.path}: column _{label} holds text where numbers belong ({err})"
        ) from err


def _finite(star: StarFile, rows: Mapping[str, np.ndarray], label: str, block: str) -> np.ndarray:
    """A numeric column that must hold finite numbers (optical constants)."""
    values = _floats(star, rows, label, block)
    if not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values))[0])
        raise RelionConversionError(
            f"{star.path}, data_{block}, row {row + 1}: _{label} must be a finite number, got {values[row]}"
        )
    return values


def _typed(
    star: StarFile, rows: Mapping[str, np.ndarray], label: str, dtype: np.dtype, block: str = "particles"
) -> np.ndarray:
    """A column converted to the type of the field it fills, with errors naming the RELION label.

    Text stays text; numbers must be numbers, and whole numbers in range where the field is an
    integer (a class number of 1e300 or a group of 99999999999 is an error, not a wrapped value).
    """
    if dtype.kind == "U":
        return np.asarray(rows[label]).astype(str)
    values = rows[label]
    if values.dtype.kind == "U" or dtype.kind not in "iub":
        values = _floats(star, rows, label, block)
    if dtype.kind in "iub" and values.size and values.dtype.kind == "f":
        fractional = ~np.isfinite(values) | (values != np.trunc(values))
        if fractional.any():
            row = int(np.flatnonzero(fractional)[0])
            raise RelionConversionError(
                f"{star.path}, data_{block}, row {row + 1}: _{label} must be a whole number, got {values[row]}"
            )
    return _in_range(star, label, values, dtype, block)


def _in_range(
    star: StarFile, label: str, values: np.ndarray, dtype: np.dtype, block: str = "particles"
) -> np.ndarray:
    """``values`` as ``dtype``, refusing any that do not fit (a finite 1e300 would become inf)."""
    low: float
    high: float
    if dtype.kind in "iu" and values.size:
        info = np.iinfo(dtype)
        low, high = int(info.min), int(info.max)
        outside = (values < low) | (values > high)
    elif dtype.kind == "f" and values.size:
        low, high = -float(np.finfo(dtype).max), float(np.finfo(dtype).max)
        outside = np.isfinite(values) & (np.abs(values) > high)
    else:
        return values.astype(dtype)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise RelionConversionError(
            f"{star.path}, data_{block}, row {row + 1}: _{label} value {values[row]} is out of range "
            f"for {dtype.name} ({low:g}..{high:g})"
        )
    return values.astype(dtype)


def _parse_names(star: StarFile, names: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        return parse_image_names(names)
    except RelionConversionError as err:
        raise RelionConversionError(f"{star.path}: rlnImageName {err}") from err


def _number_by_first_appearance(values: np.ndarray) -> np.ndarray:
    """1, 2, ... for distinct values in the order they first appear; 0 for empty names."""
    numbers = np.zeros(values.shape, dtype=np.int32)
    named = values != ""
    if named.any():
        _, first, inverse = np.unique(values[named], return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int32)
        rank[np.argsort(first)] = np.arange(1, len(first) + 1)
        numbers[named] = rank[inverse.reshape(-1)]
    return numbers
