"""A set outside the store: one ``.npz`` file a step can read, or leave for the scheduler.

Two uses, one format:

* the scheduler exports an input set (:func:`export_set`) for a step that runs where the
  store cannot be opened (pilots, batch jobs, SSH hosts); the step reads it through
  :class:`ExportedSet`, which answers the same questions as the store's own set handle;
* a step on such a host leaves each set it registered in its attempt folder
  (:func:`save_pending_set`), and the scheduler reads it back (:func:`load_pending_set`) to
  create the set when it records the step's end.

The file is a plain numpy ``.npz`` (a zip of ``.npy`` arrays), written without pickles and
read with ``allow_pickle=False``, so a file from another machine can hold data only:

* ``header``: a 0-d unicode array holding JSON: ``format`` (``"em-orchestrator-set"``),
  ``version`` (1), ``name``, ``item_type``, ``properties``, ``size``, ``set_id`` (None for a
  pending set) and ``columns`` (the names of the columns the file holds; the others take
  their schema default when read);
* ``column.NAME``: one array per column, in the column's type (little-endian), ``size`` long;
* for a text column, ``column.NAME`` holds int32 codes into ``strings.NAME``, a numpy
  unicode array of the distinct values (a million image paths of a few hundred stacks
  stay a few megabytes).

Uncompressed: reading a million particles is a few large reads, not a decompression.
Every malformed file is a :class:`SetFileError` naming the file.
"""

from __future__ import annotations

import itertools
import json
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.objects.columns import SCHEMAS, ColumnSpec, ItemSchema
from orchestrator.objects.em import Acquisition
from orchestrator.protocol.sets import PendingSet, SetDataError, SetReader
from orchestrator.store.set_query import Condition, conditions_from_kwargs, mask, typed_conditions

FORMAT = "em-orchestrator-set"
VERSION = 1
HEADER_KEY = "header"
COLUMN_PREFIX = "column."
STRINGS_PREFIX = "strings."
_OBJECTS_PER_BLOCK = 32768  # iter_objects builds objects block by block (memory stays flat)


class SetFileError(OrchestratorError):
    """A set file is missing, unreadable or malformed; the message names the file."""


def exported_set_path(directory: Path | str, set_id: int) -> Path:
    """Where the scheduler exports set ``set_id`` for a step: ``DIRECTORY/set_<id>.npz``."""
    return Path(directory) / f"set_{int(set_id)}.npz"


def pending_set_path(directory: Path | str, name: str) -> Path:
    """Where a step leaves the set it registered as ``name``: ``DIRECTORY/pending_set_<name>.npz``."""
    return Path(directory) / f"pending_set_{name}.npz"


# --------------------------------------------------------------------------- writing


def export_set(item_set: SetReader, path: Path | str) -> Path:
    """Write a whole set (all columns, read once) to ``path``, atomically; returns the path."""
    columns = item_set.to_numpy()
    size = len(columns["id"]) if "id" in columns else 0
    header = {"name": item_set.name, "item_type": item_set.item_type, "properties": dict(item_set.properties),
              "size": size, "set_id": int(item_set.id)}
    return _write(Path(path), header, SCHEMAS[item_set.item_type], columns)


def save_pending_set(pending: PendingSet, directory: Path | str) -> Path:
    """Write a set a step registered into ``directory`` (its attempt folder); returns the file.

    The caller keeps the order in which the step registered its sets (a set's properties
    may name the sets registered before it).
    """
    header = {"name": pending.name, "item_type": pending.item_type, "properties": pending.properties,
              "size": pending.size, "set_id": None}
    return _write(pending_set_path(directory, pending.name), header, SCHEMAS[pending.item_type], pending.columns)


def _write(path: Path, header: dict[str, Any], schema: ItemSchema, columns: Mapping[str, np.ndarray]) -> Path:
    arrays: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        spec = schema.by_name[name]
        if spec.is_string:
            codes, uniques = _factorize(values)
            arrays[COLUMN_PREFIX + name] = codes
            arrays[STRINGS_PREFIX + name] = uniques
        else:
            arrays[COLUMN_PREFIX + name] = np.ascontiguousarray(values, dtype=spec.storage_dtype.newbyteorder("<"))
    document = {"format": FORMAT, "version": VERSION, **header, "columns": list(columns)}
    try:
        text = json.dumps(document)
    except (TypeError, ValueError) as exc:
        raise SetFileError(f"{path}: the set's properties are not JSON ({exc})") from None
    arrays[HEADER_KEY] = np.array(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as handle:
            np.savez(handle, allow_pickle=False, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise SetFileError(f"{path}: cannot write the set file: {exc.strerror or exc}") from None
    return path


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int32 codes, unicode array of the distinct values) of a text column.

    pandas.factorize hashes the strings once; imported here because only writers of text
    columns need it (see set_codec.StringDictionary).
    """
    import pandas as pd

    if len(values) == 0:
        return np.empty(0, dtype="<i4"), np.empty(0, dtype="<U1")
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    return codes.astype("<i4"), np.asarray([str(v) for v in uniques.tolist()], dtype=str)


# --------------------------------------------------------------------------- reading


class _SetFile:
    """The checked header of a set file, and its columns read (and checked) on demand."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        with self._open() as npz:
            keys = set(npz.files)
            if HEADER_KEY not in keys:
                raise SetFileError(f"{self.path}: not a set file (no '{HEADER_KEY}' entry)")
            header = self._header(self._array(npz, HEADER_KEY))
        self.name: str = header["name"]
        self.item_type: str = header["item_type"]
        self.properties: dict[str, Any] = header["properties"]
        self.size: int = header["size"]
        self.set_id: int | None = header["set_id"]
        self.stored: list[str] = header["columns"]
        self.schema: ItemSchema = SCHEMAS[self.item_type]
        for name in self.stored:
            spec = self.schema.by_name[name]
            wanted = [COLUMN_PREFIX + name] + ([STRINGS_PREFIX + name] if spec.is_string else [])
            missing = [key for key in wanted if key not in keys]
            if missing:
                raise SetFileError(f"{self.path}: the header lists column {name!r} but the file has no "
                                   f"{', '.join(repr(m) for m in missing)} entry")

    def _open(self) -> Any:
        try:
            return np.load(self.path, allow_pickle=False)
        except FileNotFoundError:
            raise SetFileError(f"{self.path}: no such set file") from None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise SetFileError(f"{self.path}: not a set file ({exc})") from None

    def _array(self, npz: Any, key: str) -> np.ndarray:
        try:
            return np.asarray(npz[key])
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
            # ValueError also covers object arrays, which allow_pickle=False refuses
            raise SetFileError(f"{self.path}: entry {key!r} cannot be read ({exc})") from None

    def _header(self, array: np.ndarray) -> dict[str, Any]:
        if array.shape != () or array.dtype.kind != "U":
            raise SetFileError(f"{self.path}: entry '{HEADER_KEY}' must be one JSON text")
        try:
            header = json.loads(str(array))
        except ValueError as exc:
            raise SetFileError(f"{self.path}: the header is not JSON ({exc})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise SetFileError(f"{self.path}: not a set file (its header's format is not {FORMAT!r})")
        if header.get("version") != VERSION:
            raise SetFileError(f"{self.path}: set file version {header.get('version')!r}; this code reads "
                               f"version {VERSION}")
        checks: dict[str, tuple[type | tuple[type, ...], str]] = {
            "name": (str, "a string"), "item_type": (str, "a string"), "properties": (dict, "an object"),
            "size": (int, "an integer"), "set_id": ((int, type(None)), "an integer or null"),
            "columns": (list, "a list of column names")}
        for key, (kind, what) in checks.items():
            value = header.get(key)
            if key not in header or not isinstance(value, kind) or isinstance(value, bool):
                raise SetFileError(f"{self.path}: header key {key!r} must be {what}, got {value!r}")
        if header["size"] < 0:
            raise SetFileError(f"{self.path}: header key 'size' must be >= 0, got {header['size']}")
        schema = SCHEMAS.get(header["item_type"])
        if schema is None:
            raise SetFileError(f"{self.path}: unknown item type {header['item_type']!r}; known: "
                               f"{', '.join(sorted(SCHEMAS))}")
        unknown = [name for name in header["columns"] if not isinstance(name, str) or name not in schema.by_name]
        if unknown:
            raise SetFileError(f"{self.path}: the header lists unknown column(s) {unknown!r} for "
                               f"{header['item_type']}")
        return header

    def read_columns(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The columns ``names`` (schema defaults for those the file does not hold), checked."""
        result: dict[str, np.ndarray] = {}
        stored = [name for name in names if name in self.stored]
        with self._open() as npz:
            for name in stored:
                result[name] = self._column(npz, self.schema.by_name[name])
        for name in names:
            if name not in result:
                spec = self.schema.by_name[name]
                result[name] = np.full(self.size, spec.default, dtype=object if spec.is_string else spec.storage_dtype)
        return result

    def _column(self, npz: Any, spec: ColumnSpec) -> np.ndarray:
        key = COLUMN_PREFIX + spec.name
        values = self._array(npz, key)
        expected = np.dtype("<i4") if spec.is_string else spec.storage_dtype.newbyteorder("<")
        if values.shape != (self.size,) or values.dtype != expected:
            raise SetFileError(f"{self.path}: entry {key!r} must be {self.size} values of {expected}, "
                               f"got {values.shape} {values.dtype}")
        if not spec.is_string:
            return values.astype(spec.storage_dtype, copy=False)
        strings = self._array(npz, STRINGS_PREFIX + spec.name)
        if strings.ndim != 1 or (strings.dtype.kind != "U" and len(strings)):
            raise SetFileError(f"{self.path}: entry '{STRINGS_PREFIX}{spec.name}' must be a unicode array, "
                               f"got {strings.shape} {strings.dtype}")
        if len(values) and (values.min() < 0 or values.max() >= len(strings)):
            raise SetFileError(f"{self.path}: entry {key!r} holds codes outside 0..{len(strings) - 1}")
        return strings.astype(object)[values] if len(values) else np.empty(0, dtype=object)


class ExportedSet:
    """A set file read as a :class:`~orchestrator.protocol.sets.SetReader`.

    Columns are read from the file when first asked for and kept; every call returns new
    arrays, so a step may change what it gets. Conditions mean what they mean for the store
    (:mod:`orchestrator.store.set_query`).
    """

    def __init__(self, path: Path | str) -> None:
        self._file = _SetFile(path)
        if self._file.set_id is None:
            raise SetFileError(f"{self._file.path}: holds a set a step registered, not an exported set "
                               "(its header has no set id)")
        self.path = self._file.path
        self.id: int = self._file.set_id
        self.name: str = self._file.name
        self.item_type: str = self._file.item_type
        self.properties: dict[str, Any] = self._file.properties
        self.schema = self._file.schema
        self._cache: dict[str, np.ndarray] = {}

    @property
    def size(self) -> int:
        return self._file.size

    def __len__(self) -> int:
        return self.size

    @property
    def acquisition(self) -> Acquisition | None:
        data = self.properties.get("acquisition")
        if not data:
            return None
        try:
            return Acquisition(**data)
        except TypeError as exc:
            raise SetFileError(f"{self.path}: property 'acquisition' is malformed ({exc})") from None

    def _columns(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        missing = [name for name in names if name not in self._cache]
        if missing:
            self._cache.update(self._file.read_columns(missing))
        return {name: self._cache[name] for name in names}

    def _check(self, names: Sequence[str]) -> None:
        unknown = sorted(set(names) - set(self.schema.by_name))
        if unknown:
            raise UsageError(f"set {self.name!r} ({self.item_type}) has no column(s) {', '.join(unknown)}; "
                             f"columns: {', '.join(self.schema.names)}")

    def _selection(self, conditions: Sequence[Condition]) -> np.ndarray | None:
        """Boolean mask of the matching items (None: no condition, every item)."""
        if not conditions:
            return None
        self._check([c.column for c in conditions])
        # the same conversions as the store's sets: "micrograph_id=12" from a command line is a number
        conditions = typed_conditions(conditions, self.schema, f"set {self.name!r} ({self.item_type})")
        tested = self._columns(list(dict.fromkeys(c.column for c in conditions)))
        selected = np.ones(self.size, dtype=bool)
        for condition in conditions:
            selected &= mask(condition, tested[condition.column])
        return selected

    def to_numpy(self, columns: Sequence[str] | None = None, where: Sequence[Condition] = (),
                 **conditions: Any) -> dict[str, np.ndarray]:
        names = list(columns) if columns is not None else self.schema.names
        self._check(names)
        selected = self._selection([*where, *conditions_from_kwargs(**conditions)])
        data = self._columns(names)
        if selected is None:
            return {name: data[name].copy() for name in names}
        return {name: data[name][selected] for name in names}

    def iter_objects(self, where: Sequence[Condition] = (), **conditions: Any) -> Iterator[Any]:
        data = self.to_numpy(None, where, **conditions)
        n = len(data["id"])
        blocks = ({name: values[start:start + _OBJECTS_PER_BLOCK] for name, values in data.items()}
                  for start in range(0, n, _OBJECTS_PER_BLOCK))
        return itertools.chain.from_iterable(self.schema.objects(block) for block in blocks)

    def __iter__(self) -> Iterator[Any]:
        return self.iter_objects()

    def count(self, *conditions: Condition, **kwargs: Any) -> int:
        selected = self._selection([*conditions, *conditions_from_kwargs(**kwargs)])
        return self.size if selected is None else int(selected.sum())

    def unique(self, column: str) -> np.ndarray:
        self._check([column])
        return np.unique(self._columns([column])[column])

    def __repr__(self) -> str:
        return f"ExportedSet(id={self.id}, name={self.name!r}, item_type={self.item_type!r}, path='{self.path}')"


def load_pending_set(path: Path | str) -> PendingSet:
    """The set a step registered and left in ``path`` (see :func:`save_pending_set`), checked again."""
    file = _SetFile(path)
    if file.set_id is not None:
        raise SetFileError(f"{file.path}: holds exported set {file.set_id}, not a set a step registered")
    columns = file.read_columns(file.stored)
    try:
        return PendingSet(file.name, file.item_type, columns, file.properties)
    except SetDataError as exc:
        raise SetFileError(f"{file.path}: {exc}") from None


__all__ = [
    "ExportedSet",
    "SetFileError",
    "export_set",
    "exported_set_path",
    "load_pending_set",
    "pending_set_path",
    "save_pending_set",
]
