"""Where-clauses on sets: equality, membership and ranges on single columns.

Conditions are small typed records rather than SQL text, so they can be checked against the
item schema, answered from the set index (equality on indexed columns) or the chunks' zone
maps (ranges), and evaluated on numpy columns. :func:`parse_condition` reads the command-line
form: ``micrograph_id=12``, ``class_id=1,2,3``, ``defocus_u=15000..20000``, ``ctf_resolution<=4``.

The command line cannot know a column's type, so equality values stay text until
:func:`typed_conditions` converts every value to the type of the column it tests (the set
knows its schema): ``micrograph_name=0012`` stays the text ``"0012"``, ``micrograph_id=abc``
is an error naming the column and the value rather than a raw ``ValueError`` (or, worse, a
silent "no match"), and a number outside the column's type (``micrograph_id=99999999999``
on an int32 column) is refused before it reaches the index query.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator.errors import UsageError

if TYPE_CHECKING:
    from orchestrator.objects.columns import ColumnSpec, ItemSchema


@dataclass(frozen=True, slots=True)
class Equals:
    column: str
    value: Any


@dataclass(frozen=True, slots=True)
class OneOf:
    column: str
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Between:
    """``low <= column <= high``; either bound may be None (open)."""

    column: str
    low: float | None = None
    high: float | None = None


Condition = Equals | OneOf | Between


def conditions_from_kwargs(**kwargs: Any) -> list[Condition]:
    """``micrograph_id=3`` -> Equals, ``class_id=[1, 2]`` -> OneOf, ``defocus_u=(1e4, 2e4)`` -> Between."""
    conditions: list[Condition] = []
    for column, value in kwargs.items():
        if isinstance(value, (Equals, OneOf, Between)):
            conditions.append(value)
        elif isinstance(value, tuple) and len(value) == 2:
            conditions.append(Between(column, value[0], value[1]))
        elif isinstance(value, (list, set, frozenset, np.ndarray)):
            conditions.append(OneOf(column, tuple(value)))
        else:
            conditions.append(Equals(column, value))
    return conditions


_CONDITION = re.compile(r"^\s*(\w+)\s*(<=|>=|==|=)\s*(.+?)\s*$")


def parse_condition(text: str) -> Condition:
    """Parse one condition of the command line (see the module docstring for the forms)."""
    match = _CONDITION.match(text)
    if not match:
        raise UsageError(
            f"where-clause {text!r}: expected COLUMN=VALUE, COLUMN=A,B,C, COLUMN=LOW..HIGH, "
            "COLUMN<=VALUE or COLUMN>=VALUE"
        )
    column, op, raw = match.groups()
    if op == "<=":
        return Between(column, None, _bound(text, raw))
    if op == ">=":
        return Between(column, _bound(text, raw), None)
    if ".." in raw:
        low, high = raw.split("..", 1)
        return Between(column, _bound(text, low) if low.strip() else None,
                       _bound(text, high) if high.strip() else None)
    if "," in raw:
        return OneOf(column, tuple(v.strip() for v in raw.split(",")))
    return Equals(column, raw)


def _bound(text: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise UsageError(f"where-clause {_shown(text)}: range bound {_shown(raw.strip())} is not a number") from None


def typed_conditions(conditions: Sequence[Condition], schema: ItemSchema, owner: str) -> list[Condition]:
    """``conditions`` with every value converted to its column's type (``owner`` names the set).

    A value the column cannot hold is a :class:`UsageError` naming the set, the column, the
    value and the column's type; the columns must exist in ``schema`` (checked by the caller).
    """
    typed: list[Condition] = []
    for condition in conditions:
        spec = schema.by_name[condition.column]
        try:
            typed.append(_typed(condition, spec))
        except ValueError as exc:
            raise UsageError(f"{owner}: where {condition.column}: {exc}") from None
    return typed


def _typed(condition: Condition, spec: ColumnSpec) -> Condition:
    if isinstance(condition, Equals):
        return Equals(condition.column, _value(condition.value, spec))
    if isinstance(condition, OneOf):
        return OneOf(condition.column, tuple(_value(v, spec) for v in condition.values))
    if spec.is_string or spec.storage_dtype.kind == "b":
        raise ValueError(f"a range needs a numeric column, but {spec.name} holds {_kind(spec)}")
    return Between(condition.column, _number(condition.low), _number(condition.high))


def _number(bound: Any) -> float | None:
    if bound is None:
        return None
    if isinstance(bound, bool | np.bool_) or not isinstance(bound, str | int | float | np.number):
        raise ValueError(f"range bound {_shown(bound)} is not a number")
    try:
        return float(bound)
    except (ValueError, OverflowError):
        raise ValueError(f"range bound {_shown(bound)} is not a number") from None


_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_MAX_DIGITS = 40  # longer text is no number any column holds (and int() of 5,000 digits raises)


def _value(value: Any, spec: ColumnSpec) -> Any:
    """One equality value as the column's type, or ValueError saying why it cannot be."""
    if spec.is_string:
        return value if isinstance(value, str) else str(value)
    dtype = spec.storage_dtype
    if dtype.kind == "b":
        if isinstance(value, bool | np.bool_) or (isinstance(value, int | np.integer) and value in (0, 1)):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"{_shown(value)} is not true or false (the column holds booleans)")
    if isinstance(value, bool | np.bool_) or not isinstance(value, str | int | float | np.number):
        raise ValueError(f"{_shown(value)} is not a number (the column holds {_kind(spec)})")
    number = _parse_number(value, spec) if isinstance(value, str) else value
    if dtype.kind == "f":
        # compared as the column stores it: defocus_u=0.1 matches the float32 nearest 0.1
        largest = float(np.finfo(dtype).max)
        out_of_range = ValueError(f"{_shown(value)} is out of range for the column's {dtype.name} (±{largest:g})")
        try:
            as_float = float(number)
        except OverflowError:  # an int beyond any float
            raise out_of_range from None
        if math.isfinite(as_float) and abs(as_float) > largest:
            raise out_of_range
        return float(dtype.type(as_float))
    if isinstance(number, float | np.floating):
        if not (math.isfinite(number) and float(number).is_integer()):
            raise ValueError(f"{_shown(value)} is not a whole number (the column holds {_kind(spec)})")
        number = int(number)
    info = np.iinfo(dtype)
    if not info.min <= int(number) <= info.max:
        raise ValueError(f"{_shown(value)} is out of range for the column's {dtype.name} ({info.min}..{info.max})")
    return int(number)


def _parse_number(text: str, spec: ColumnSpec) -> int | float:
    raw = text.strip()
    if len(raw) <= _MAX_DIGITS:
        for convert in (int, float):
            try:
                return convert(raw)
            except ValueError:
                continue
    raise ValueError(f"{_shown(text)} is not a number (the column holds {_kind(spec)})")


def _kind(spec: ColumnSpec) -> str:
    if spec.is_string:
        return "text"
    kind = spec.storage_dtype.kind
    return {"b": "booleans", "f": f"{spec.dtype} numbers"}.get(kind, f"{spec.dtype} integers")


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, np.generic) else repr(value.item())
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def mask(condition: Condition, values: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``values`` (one column) that satisfy ``condition``."""
    if isinstance(condition, Equals):
        return values == condition.value
    if isinstance(condition, OneOf):
        return np.isin(values, np.asarray(condition.values, dtype=values.dtype if values.dtype != object
                                          else object))
    result = np.ones(len(values), dtype=bool)
    if condition.low is not None:
        result &= values >= condition.low
    if condition.high is not None:
        result &= values <= condition.high
    return result
