"""The columns of a particle set, as the project's data model defines them.

The conversions in this package take and return particle sets as plain dicts of column name
-> numpy array, so that they depend on nothing but numpy; this table is what they agree on.
The data model (``orchestrator.objects.columns.PARTICLE_COLUMNS``) owns the schema; this is
the copy the EM formats check against, kept to the same names, types and defaults, so that
this package imports nothing from the data model. String columns are numpy ``str`` arrays here
(the data model keeps them as object arrays; either converts to the other with ``astype``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from orchestrator.em.errors import RelionConversionError

__all__ = ["PARTICLE_DTYPES", "PARTICLE_DEFAULTS", "complete_particles", "particle_count"]

PARTICLE_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(dtype)
    for name, dtype in (
        ("id", "int64"),
        ("image_index", "int32"),  # 1-based index in the stack; 0: no image
        ("image_path", "str"),
        ("micrograph_id", "int32"),
        ("micrograph_name", "str"),
        ("coord_x", "float32"),  # pixels of the micrograph
        ("coord_y", "float32"),
        ("defocus_u", "float32"),  # Å
        ("defocus_v", "float32"),
        ("defocus_angle", "float32"),  # degrees
        ("ctf_resolution", "float32"),  # Å
        ("ctf_fit_quality", "float32"),
        ("rot", "float32"),  # degrees, RELION's ZYZ Euler angles
        ("tilt", "float32"),
        ("psi", "float32"),
        ("shift_x", "float32"),  # pixels, RELION's rlnOriginX sign convention
        ("shift_y", "float32"),
        ("shift_z", "float32"),
        ("class_id", "int32"),  # 0: none
        ("subset", "int8"),  # 0: none; 1/2: gold-standard halves
        ("optics_group", "int16"),  # 1-based
        ("enabled", "bool"),
    )
}

# What a column holds when a file does not say; "id" defaults to 1..n, see complete_particles.
PARTICLE_DEFAULTS: dict[str, object] = {
    "ctf_resolution": np.nan,  # not estimated (as orchestrator.objects.columns has it)
    "ctf_fit_quality": np.nan,
    "image_index": 0,
    "image_path": "",
    "micrograph_id": 0,
    "micrograph_name": "",
    "optics_group": 1,
    "enabled": True,
}


def particle_count(columns: Mapping[str, np.ndarray]) -> int:
    """Number of rows; an error naming the columns when they differ in length."""
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise RelionConversionError(f"particle columns differ in length: {detail}")
    return next(iter(lengths.values()), 0)


def complete_particles(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All schema columns in schema order and types, missing ones filled with their defaults.

    Columns outside the schema are dropped: they have no place in a RELION file.
    """
    n = particle_count(columns)
    complete: dict[str, np.ndarray] = {}
    for name, dtype in PARTICLE_DTYPES.items():
        if name in columns:
            complete[name] = _cast(name, np.asarray(columns[name]), dtype)
        elif name == "id":
            complete[name] = np.arange(1, n + 1, dtype=dtype)
        else:
            complete[name] = np.full(n, PARTICLE_DEFAULTS.get(name, 0), dtype=dtype)
    return complete


def _cast(name: str, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "U":
        return values.astype(str)
    if dtype.kind in "iu" and values.dtype.kind in "iuf" and values.size:
        info = np.iinfo(dtype)
        if values.dtype.kind == "f" and not np.all(values == np.trunc(values)):
            raise RelionConversionError(
                f"column {name}: expected whole numbers, got {values.dtype} fractions"
            )
        if values.min() < info.min or values.max() > info.max:
            raise RelionConversionError(
                f"column {name}: values {values.min()}..{values.max()} do not fit {dtype.name}"
            )
    try:
        return values.astype(dtype)
    except ValueError as err:
        raise RelionConversionError(
            f"column {name}: cannot convert {values.dtype} to {dtype.name}: {err}"
        ) from err
