"""Sets as a step sees them: read-only readers of input sets, and sets it registers.

A step never opens the project store. It reads an input set through ``ctx.open_set(id)``,
which returns a :class:`SetReader` (the store's own set handle on the store's machine, or a
file the scheduler exported for a host that cannot reach the store), and it registers an
output set with ``ctx.register_set(...)``, which only records a :class:`PendingSet` and
returns a placeholder ``{"$set": NAME}``. The set is created when the step's end is
recorded, in the same transaction as its FINISHED state, and every placeholder in the
step's result is then replaced by the new set's id (:func:`substitute_set_ids`). So a step
that fails, is retried or re-run never leaves half a set behind, and a step on a pilot, a
batch job or an SSH host needs no connection to the store.

Pure: numpy and the item schemas only (no store, no database driver), so every compute
node can import it; numpy and the schemas are imported when a set is first registered, since
the command line imports this package and must start at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.protocol.errors import ProtocolError

if TYPE_CHECKING:
    import numpy as np

    from orchestrator.objects.columns import ColumnSpec, ItemSchema
    from orchestrator.objects.em import Acquisition
    from orchestrator.store.set_query import Condition

SET_PLACEHOLDER = "$set"
"""The key of a placeholder: ``{"$set": NAME}`` stands for the id of the set NAME."""

SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
"""Names of registered sets: they also name the files a remote step leaves for the scheduler."""


class SetDataError(ProtocolError):
    """A set a step registers is malformed, or a placeholder names no set the step registered."""


# --------------------------------------------------------------------------- reading


class SetReader(Protocol):
    """A read-only set, whatever holds it (the store, or a file exported for the step).

    Conditions are those of the store: ``where=[Equals(...), Between(...)]`` or keywords,
    ``micrograph_id=3`` (equality), ``class_id=[1, 2]`` (one of), ``defocus_u=(1e4, 2e4)``
    (inclusive range). String columns come back as object arrays of ``str``.
    """

    id: int
    name: str
    item_type: str
    properties: dict[str, Any]

    @property
    def size(self) -> int:
        """Number of items."""
        ...

    @property
    def acquisition(self) -> Acquisition | None:
        """The set's microscope settings (``properties["acquisition"]``), if it has them."""
        ...

    def to_numpy(self, columns: Sequence[str] | None = None, where: Sequence[Condition] = (),
                 **conditions: Any) -> dict[str, np.ndarray]:
        """The matching items, one numpy array per column (all columns by default)."""
        ...

    def iter_objects(self, where: Sequence[Condition] = (), **conditions: Any) -> Iterator[Any]:
        """The matching items as independent objects (e.g. ``Particle``)."""
        ...

    def count(self, *conditions: Condition, **kwargs: Any) -> int:
        """Number of matching items."""
        ...

    def unique(self, column: str) -> np.ndarray:
        """The distinct values of one column, sorted."""
        ...


class SetSource(Protocol):
    """Where a step's input sets come from; the worker gives one to the step's context."""

    def open(self, set_id: int) -> SetReader:
        """The set ``set_id``; an error naming it when it cannot be read."""
        ...


# --------------------------------------------------------------------------- registering


@dataclass
class PendingSet:
    """A set a step registered: created, with its id, when the step's end is recorded.

    Checked when it is made: a known item type, known column names, one length for every
    column, values the column's type can hold without loss, item ids either all 0 (the set
    numbers its items) or all distinct and positive, JSON properties. Columns are kept as
    given (converted to the column's type); missing columns take their defaults when the
    set is created. ``properties`` may hold placeholders of sets the same step registered
    before this one: they are replaced by those sets' ids.
    """

    name: str
    item_type: str
    columns: dict[str, np.ndarray]
    properties: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from orchestrator.objects.columns import SCHEMAS

        if not isinstance(self.name, str) or not SET_NAME.match(self.name):
            raise SetDataError(f"set name {self.name!r}: use 1-128 letters, digits, '_', '.', '-' "
                               "(starting with a letter or digit)")
        where = f"set {self.name!r}"
        schema = SCHEMAS.get(self.item_type) if isinstance(self.item_type, str) else None
        if schema is None:
            raise SetDataError(f"{where}: unknown item type {self.item_type!r}; known: {', '.join(sorted(SCHEMAS))}")
        where = f"set {self.name!r} ({self.item_type})"
        if not isinstance(self.columns, Mapping):
            raise SetDataError(f"{where}: columns must be a dict of column name -> array, "
                               f"got {type(self.columns).__name__}")
        self.columns = _typed_columns(where, schema, self.columns)
        self.properties = _json_properties(where, self.properties)

    @property
    def size(self) -> int:
        """Number of items."""
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def placeholder(self) -> dict[str, str]:
        """What the step puts in its result where the set's id goes."""
        return {SET_PLACEHOLDER: self.name}


def _typed_columns(where: str, schema: ItemSchema, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    import numpy as np

    unknown = sorted(str(name) for name in columns if name not in schema.by_name)
    if unknown:
        raise SetDataError(f"{where}: unknown column(s) {', '.join(unknown)}; columns: {', '.join(schema.names)}")
    typed: dict[str, np.ndarray] = {}
    length: tuple[str, int] | None = None
    for name, values in columns.items():
        array = _typed_column(where, schema.by_name[name], values)
        if length is None:
            length = (name, len(array))
        elif len(array) != length[1]:
            raise SetDataError(f"{where}: column {name!r} has {len(array)} values but column "
                               f"{length[0]!r} has {length[1]}; every column needs one value per item")
        typed[name] = array
    ids = typed.get("id")
    if ids is not None and ids.any():
        if (ids <= 0).any():
            raise SetDataError(f"{where}: column 'id' mixes ids with 0 or negative values; give every item "
                               "a positive id, or none at all (0 everywhere) to let the set number them")
        if len(np.unique(ids)) != len(ids):
            raise SetDataError(f"{where}: column 'id' holds duplicate ids")
    return typed


def _typed_column(where: str, spec: ColumnSpec, values: Any) -> np.ndarray:
    """``values`` as the column's type; an error naming the column when they do not fit it."""
    import numpy as np

    given = np.asarray(values)
    if given.ndim != 1:
        raise SetDataError(f"{where}: column {spec.name!r} must be one-dimensional, got shape {given.shape}")
    if spec.is_string:
        if given.dtype.kind == "U" or len(given) == 0:
            return given.astype(object)
        if given.dtype.kind != "O" or not all(isinstance(v, str) for v in given.tolist()):
            raise SetDataError(f"{where}: column {spec.name!r} holds text: give strings, got {given.dtype} values")
        return given
    target = spec.storage_dtype
    if target.kind in "iu" and given.dtype.kind in "iuf" and len(given):
        # checked before the cast, which would wrap or truncate without a word
        if given.dtype.kind == "f" and not np.isfinite(given).all():
            raise SetDataError(f"{where}: column {spec.name!r} ({target}) holds NaN or infinite values")
        info = np.iinfo(target)
        if given.min() < info.min or given.max() > info.max:
            raise SetDataError(f"{where}: column {spec.name!r} ({target}) holds values outside "
                               f"{info.min}..{info.max}")
        if given.dtype.kind == "f" and not np.array_equal(np.trunc(given), given):
            raise SetDataError(f"{where}: column {spec.name!r} ({target}) holds values with a fraction")
    try:
        return given.astype(target) if given.dtype.kind in "biuf" else np.asarray(values, dtype=target)
    except (TypeError, ValueError) as exc:
        raise SetDataError(f"{where}: column {spec.name!r} ({target}): {exc}") from None


def _json_properties(where: str, properties: Any) -> dict[str, Any]:
    """A copy of ``properties`` that is plain JSON (what the store keeps)."""
    if properties is None:
        return {}
    if not isinstance(properties, Mapping):
        raise SetDataError(f"{where}: properties must be a dict, got {type(properties).__name__}")
    try:
        copy = json.loads(json.dumps(dict(properties)))
    except (TypeError, ValueError) as exc:
        raise SetDataError(f"{where}: properties are not JSON ({exc})") from None
    if not isinstance(copy, dict):  # keys that are not strings are refused by json.dumps already
        raise SetDataError(f"{where}: properties must be a dict")
    return copy


# --------------------------------------------------------------------------- placeholders


def placeholder_name(value: Any) -> str | None:
    """The set name when ``value`` is a placeholder ``{"$set": NAME}``, else None."""
    if isinstance(value, Mapping) and SET_PLACEHOLDER in value:
        name = value[SET_PLACEHOLDER]
        if len(value) != 1 or not isinstance(name, str):
            raise SetDataError(f"malformed set placeholder {dict(value)!r}: expected {{{SET_PLACEHOLDER!r}: NAME}}")
        return name
    return None


def set_placeholders(value: Any) -> list[str]:
    """The set names of every placeholder in a JSON value, in the order they appear."""
    name = placeholder_name(value)
    if name is not None:
        return [name]
    if isinstance(value, Mapping):
        return [found for item in value.values() for found in set_placeholders(item)]
    if isinstance(value, (list, tuple)):
        return [found for item in value for found in set_placeholders(item)]
    return []


def substitute_set_ids(result: Any, ids: Mapping[str, int]) -> Any:
    """A copy of a JSON ``result`` in which every ``{"$set": NAME}`` is ``ids[NAME]``.

    A placeholder naming a set that is not in ``ids`` (the step did not register it) is an
    error naming it.
    """
    name = placeholder_name(result)
    if name is not None:
        if name not in ids:
            known = ", ".join(sorted(ids)) or "none"
            raise SetDataError(f"placeholder {{{SET_PLACEHOLDER!r}: {name!r}}} names no set the step "
                               f"registered (registered: {known})")
        return int(ids[name])
    if isinstance(result, Mapping):
        return {key: substitute_set_ids(value, ids) for key, value in result.items()}
    if isinstance(result, (list, tuple)):
        return [substitute_set_ids(value, ids) for value in result]
    return result


def referenced_set_ids(value: Any) -> list[int]:
    """The set ids an output value names: under ``set_id`` and keys ending in ``_set_id``.

    The convention of set outputs (``{"set_id": 12, "size": n, "micrographs_set_id": 9}``),
    so the scheduler can tell which sets a run's inputs point to (the sets to export for a
    step that cannot open the store), without knowing the plugin. Sorted, each once.
    """
    found: set[int] = set()

    def walk(item: Any) -> None:
        if isinstance(item, Mapping):
            for key, child in item.items():
                if (key == "set_id" or str(key).endswith("_set_id")) and isinstance(child, int) \
                        and not isinstance(child, bool) and child > 0:
                    found.add(child)
                else:
                    walk(child)
        elif isinstance(item, (list, tuple)):
            for child in item:
                walk(child)

    walk(value)
    return sorted(found)


__all__ = [
    "SET_PLACEHOLDER",
    "PendingSet",
    "SetDataError",
    "SetReader",
    "SetSource",
    "placeholder_name",
    "referenced_set_ids",
    "set_placeholders",
    "substitute_set_ids",
]
