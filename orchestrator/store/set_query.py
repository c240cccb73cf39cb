"""Where-clauses on sets: equality, membership and ranges on single columns.

Conditions are small typed records rather than SQL text, so they can be checked against the
item schema, answered from the set index (equality on indexed columns) or the chunks' zone
maps (ranges), and evaluated on numpy columns. :func:`parse_condition` reads the command-line
form: ``micrograph_id=12``, ``class_id=1,2,3``, ``defocus_u=15000..20000``, ``ctf_resolution<=4``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.errors import UsageError


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


_CONDITION = re.compile(r"^\s*(\w+)\s*(<=|>=|=|==)\s*(.+?)\s*$")


def parse_condition(text: str) -> Condition:
    """Parse one condition of the command line (see the module docstring for the forms)."""
    match = _CONDITION.match(text)
    if not match:
        raise UsageError(
            f"where-clause {text!r}: expected COLUMN=VALUE, COLUMN=A,B,C, COLUMN=LOW..HIGH, "
            "COLUMN<=VALUE or COLUMN>=VALUE"
        )
    column, op, raw = match.groups()
    try:
        if op == "<=":
            return Between(column, None, float(raw))
        if op == ">=":
            return Between(column, float(raw), None)
        if ".." in raw:
            low, high = raw.split("..", 1)
            return Between(column, float(low) if low else None, float(high) if high else None)
        if "," in raw:
            return OneOf(column, tuple(_scalar(v) for v in raw.split(",")))
        return Equals(column, _scalar(raw))
    except ValueError as exc:
        raise UsageError(f"where-clause {text!r}: {exc}") from None


def _scalar(raw: str) -> Any:
    raw = raw.strip()
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            continue
    return raw


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
