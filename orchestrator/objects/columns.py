"""Column schemas: how each kind of set item is laid out as typed columns.

A set is stored column by column (see :mod:`orchestrator.store.sets`). An :class:`ItemSchema`
names the columns of one item type with their numpy dtypes, says which are indexed for
equality queries, and converts between columns and objects. Conversions build objects with
chained ``map`` calls so that a million particles become objects in about a second: the
per-item work stays in C, only the dataclass constructors run Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.objects.em import (
    CTF,
    Alignment,
    ClassAverage,
    Coordinate,
    Micrograph,
    Movie,
    Particle,
)

STRING = "str"  # dictionary-encoded string column: stored as int32 codes + a per-set dictionary


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One typed column: a numpy dtype string (e.g. ``float32``) or :data:`STRING`."""

    name: str
    dtype: str
    default: Any = 0

    @property
    def is_string(self) -> bool:
        return self.dtype == STRING

    @property
    def storage_dtype(self) -> np.dtype:
        return np.dtype(np.int32) if self.is_string else np.dtype(self.dtype)


Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class ItemSchema:
    """Columns of one item type and the conversions between columns and objects."""

    item_type: str
    columns: tuple[ColumnSpec, ...]
    indexed: tuple[str, ...]
    build: Callable[[dict[str, list[Any]], int], Iterator[Any]]
    flatten: Callable[[Sequence[Any]], dict[str, list[Any]]]
    by_name: dict[str, ColumnSpec] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {c.name: c for c in self.columns})
        unknown = [name for name in self.indexed if name not in self.by_name]
        if unknown:
            raise ValueError(f"{self.item_type}: indexed columns not in schema: {unknown}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def objects(self, columns: Columns) -> Iterator[Any]:
        """Build independent objects from a block of columns (one per row)."""
        n = len(columns["id"])
        lists = {name: array.tolist() for name, array in columns.items()}
        return self.build(lists, n)

    def to_columns(self, items: Iterable[Any]) -> Columns:
        """Flatten objects into typed columns (missing values take the column default)."""
        flat = self.flatten(list(items))
        return {spec.name: _as_column(spec, flat[spec.name]) for spec in self.columns}


def _as_column(spec: ColumnSpec, values: list[Any]) -> np.ndarray:
    if spec.is_string:
        return np.asarray(values, dtype=object)
    return np.asarray([spec.default if v is None else v for v in values], dtype=spec.dtype)


def _col(name: str, dtype: str, default: Any = 0) -> ColumnSpec:
    return ColumnSpec(name, dtype, default)


# --------------------------------------------------------------------------- particles
PARTICLE_COLUMNS = (
    _col("id", "int64"),
    _col("image_index", "int32"),
    _col("image_path", STRING, ""),
    _col("micrograph_id", "int32"),
    _col("micrograph_name", STRING, ""),
    _col("coord_x", "float32"),
    _col("coord_y", "float32"),
    _col("defocus_u", "float32"),
    _col("defocus_v", "float32"),
    _col("defocus_angle", "float32"),
    _col("ctf_resolution", "float32", np.nan),
    _col("ctf_fit_quality", "float32", np.nan),
    _col("rot", "float32"),
    _col("tilt", "float32"),
    _col("psi", "float32"),
    _col("shift_x", "float32"),
    _col("shift_y", "float32"),
    _col("shift_z", "float32"),
    _col("class_id", "int32"),
    _col("subset", "int8"),
    _col("optics_group", "int16", 1),
    _col("enabled", "bool", True),
)


def _build_particles(c: dict[str, list[Any]], n: int) -> Iterator[Particle]:
    coords = map(Coordinate, c["coord_x"], c["coord_y"], c["micrograph_id"])
    ctfs = map(CTF, c["defocus_u"], c["defocus_v"], c["defocus_angle"], c["ctf_resolution"],
               c["ctf_fit_quality"])
    aligns = map(Alignment, c["rot"], c["tilt"], c["psi"], c["shift_x"], c["shift_y"], c["shift_z"])
    return map(Particle, c["id"], c["image_index"], c["image_path"], c["micrograph_id"],
               c["micrograph_name"], coords, ctfs, aligns, c["class_id"], c["subset"],
               c["optics_group"], c["enabled"])


def _flatten_particles(items: Sequence[Particle]) -> dict[str, list[Any]]:
    return {
        "id": [p.id for p in items],
        "image_index": [p.image_index for p in items],
        "image_path": [p.image_path for p in items],
        "micrograph_id": [p.micrograph_id for p in items],
        "micrograph_name": [p.micrograph_name for p in items],
        "coord_x": [p.coordinate.x for p in items],
        "coord_y": [p.coordinate.y for p in items],
        "defocus_u": [p.ctf.defocus_u for p in items],
        "defocus_v": [p.ctf.defocus_v for p in items],
        "defocus_angle": [p.ctf.defocus_angle for p in items],
        "ctf_resolution": [p.ctf.resolution for p in items],
        "ctf_fit_quality": [p.ctf.fit_quality for p in items],
        "rot": [p.alignment.rot for p in items],
        "tilt": [p.alignment.tilt for p in items],
        "psi": [p.alignment.psi for p in items],
        "shift_x": [p.alignment.shift_x for p in items],
        "shift_y": [p.alignment.shift_y for p in items],
        "shift_z": [p.alignment.shift_z for p in items],
        "class_id": [p.class_id for p in items],
        "subset": [p.subset for p in items],
        "optics_group": [p.optics_group for p in items],
        "enabled": [p.enabled for p in items],
    }


# --------------------------------------------------------------------------- micrographs
MICROGRAPH_COLUMNS = (
    _col("id", "int64"),
    _col("path", STRING, ""),
    _col("movie_id", "int64", -1),
    _col("has_ctf", "bool", False),
    _col("defocus_u", "float32"),
    _col("defocus_v", "float32"),
    _col("defocus_angle", "float32"),
    _col("ctf_resolution", "float32", np.nan),
    _col("ctf_fit_quality", "float32", np.nan),
    _col("optics_group", "int16", 1),
    _col("enabled", "bool", True),
)


def _build_micrographs(c: dict[str, list[Any]], n: int) -> Iterator[Micrograph]:
    ctfs = (
        CTF(u, v, a, r, q) if has else None
        for has, u, v, a, r, q in zip(c["has_ctf"], c["defocus_u"], c["defocus_v"], c["defocus_angle"],
                                      c["ctf_resolution"], c["ctf_fit_quality"], strict=True)
    )
    movie_ids = (None if m < 0 else m for m in c["movie_id"])
    return map(Micrograph, c["id"], c["path"], movie_ids, ctfs, c["optics_group"], c["enabled"])


def _flatten_micrographs(items: Sequence[Micrograph]) -> dict[str, list[Any]]:
    def ctf_field(name: str) -> list[Any]:
        return [getattr(m.ctf, name) if m.ctf is not None else None for m in items]

    return {
        "id": [m.id for m in items],
        "path": [m.path for m in items],
        "movie_id": [m.movie_id for m in items],
        "has_ctf": [m.ctf is not None for m in items],
        "defocus_u": ctf_field("defocus_u"),
        "defocus_v": ctf_field("defocus_v"),
        "defocus_angle": ctf_field("defocus_angle"),
        "ctf_resolution": ctf_field("resolution"),
        "ctf_fit_quality": ctf_field("fit_quality"),
        "optics_group": [m.optics_group for m in items],
        "enabled": [m.enabled for m in items],
    }


# --------------------------------------------------------------------------- movies
MOVIE_COLUMNS = (
    _col("id", "int64"),
    _col("path", STRING, ""),
    _col("n_frames", "int32"),
    _col("optics_group", "int16", 1),
    _col("enabled", "bool", True),
)


def _build_movies(c: dict[str, list[Any]], n: int) -> Iterator[Movie]:
    return map(Movie, c["id"], c["path"], c["n_frames"], c["optics_group"], c["enabled"])


def _flatten_movies(items: Sequence[Movie]) -> dict[str, list[Any]]:
    return {name: [getattr(m, name) for m in items] for name in ("id", "path", "n_frames",
                                                                  "optics_group", "enabled")}


# --------------------------------------------------------------------------- coordinates
COORDINATE_COLUMNS = (
    _col("id", "int64"),
    _col("x", "float32"),
    _col("y", "float32"),
    _col("micrograph_id", "int32"),
    _col("score", "float32", np.nan),
)


def _build_coordinates(c: dict[str, list[Any]], n: int) -> Iterator[Coordinate]:
    return map(Coordinate, c["x"], c["y"], c["micrograph_id"], c["score"])


def _flatten_coordinates(items: Sequence[Coordinate]) -> dict[str, list[Any]]:
    return {
        "id": [None] * len(items),  # the set numbers coordinates as they are appended
        "x": [c.x for c in items],
        "y": [c.y for c in items],
        "micrograph_id": [c.micrograph_id for c in items],
        "score": [c.score for c in items],
    }


# --------------------------------------------------------------------------- class averages
CLASS_COLUMNS = (
    _col("id", "int64"),
    _col("image_index", "int32"),
    _col("image_path", STRING, ""),
    _col("size", "int64"),
    _col("resolution", "float32", np.nan),
    _col("dimensions", "int8", 2),
    _col("enabled", "bool", True),
)


def _build_classes(c: dict[str, list[Any]], n: int) -> Iterator[ClassAverage]:
    return map(ClassAverage, c["id"], c["image_index"], c["image_path"], c["size"], c["resolution"],
               c["dimensions"], c["enabled"])


def _flatten_classes(items: Sequence[ClassAverage]) -> dict[str, list[Any]]:
    return {name: [getattr(x, name) for x in items] for name in
            ("id", "image_index", "image_path", "size", "resolution", "dimensions", "enabled")}


SCHEMAS: dict[str, ItemSchema] = {
    schema.item_type: schema
    for schema in (
        ItemSchema("Particle", PARTICLE_COLUMNS, ("micrograph_id", "class_id"), _build_particles,
                   _flatten_particles),
        ItemSchema("Micrograph", MICROGRAPH_COLUMNS, (), _build_micrographs, _flatten_micrographs),
        ItemSchema("Movie", MOVIE_COLUMNS, (), _build_movies, _flatten_movies),
        ItemSchema("Coordinate", COORDINATE_COLUMNS, ("micrograph_id",), _build_coordinates,
                   _flatten_coordinates),
        ItemSchema("ClassAverage", CLASS_COLUMNS, (), _build_classes, _flatten_classes),
    )
}
