"""Encoding of set columns into chunk rows and back.

A chunk holds up to ``chunk_size`` consecutive items. Each of its columns is stored as the
raw little-endian bytes of a typed numpy array (float32 angles, int32 ids, ...), with the
column's min and max (a zone map) so range queries can skip chunks. String columns are
dictionary-encoded: the chunk stores int32 codes, the set's ``set_strings`` rows the values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from orchestrator.objects.columns import Columns, ColumnSpec, ItemSchema


class StringDictionary:
    """Codes of one string column of one set; grows as new values are appended."""

    def __init__(self, values: Sequence[str] = ()) -> None:
        self.values: list[str] = list(values)
        self.codes: dict[str, int] = {v: i for i, v in enumerate(self.values)}

    def encode(self, values: np.ndarray) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Codes for ``values`` and the (code, value) pairs that are new to the dictionary.

        pandas.factorize hashes the strings once (a million paths in ~0.1 s), where
        ``np.unique`` would first convert and sort them. Imported here, not at the top: the
        store is opened by every scheduler, pilot worker and batch job, most of which never
        write a string column, and pandas costs them 0.35 s to import.
        """
        import pandas as pd

        local_codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
        added: list[tuple[int, str]] = []
        mapping = np.empty(len(uniques), dtype=np.int32)
        for i, value in enumerate(uniques.tolist()):
            value = str(value)
            code = self.codes.get(value)
            if code is None:
                code = len(self.values)
                self.values.append(value)
                self.codes[value] = code
                added.append((code, value))
            mapping[i] = code
        return mapping[local_codes], added

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(self.values, dtype=object)[codes]


def normalise_columns(schema: ItemSchema, columns: Mapping[str, Any], n: int) -> Columns:
    """Typed columns for ``schema`` from user input: unknown names are errors, missing ones defaults."""
    unknown = sorted(set(columns) - set(schema.by_name))
    if unknown:
        raise KeyError(f"unknown column(s) for {schema.item_type}: {', '.join(unknown)}; "
                       f"known: {', '.join(schema.names)}")
    result: Columns = {}
    for spec in schema.columns:
        if spec.name in columns:
            values = columns[spec.name]
            try:
                array = np.asarray(values, dtype=object if spec.is_string else spec.dtype)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ValueError(f"column {spec.name!r} cannot hold its values as {spec.dtype}: {exc}") from None
            if array.shape != (n,):
                raise ValueError(f"column {spec.name!r} has shape {array.shape}, expected ({n},)")
        else:
            array = np.full(n, spec.default, dtype=object if spec.is_string else spec.dtype)
        result[spec.name] = array
    return result


def invalid_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids that are 0 or negative, ids given more than once) among the ids of one append.

    Both are sorted and unique, and usually empty. Increasing ids (numbered by the set, or
    copied in order from another set) cost one vectorised pass; only a batch out of order is
    sorted to find its repeats.
    """
    nonpositive = np.unique(ids[ids <= 0])
    if len(ids) < 2 or bool((ids[1:] > ids[:-1]).all()):
        return nonpositive, ids[:0]
    ordered = np.sort(ids)
    return nonpositive, np.unique(ordered[1:][ordered[1:] == ordered[:-1]])


def listed_ids(ids: np.ndarray, shown: int = 5) -> str:
    """``"0, -3, 7 and 12 more (15 ids)"``: the first few of a sorted id array, for messages."""
    head = ", ".join(str(int(i)) for i in ids[:shown])
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return f"{head}{more} ({len(ids)} id{'s' if len(ids) != 1 else ''})"


def encode_column(spec: ColumnSpec, values: np.ndarray) -> tuple[bytes, float | None, float | None]:
    """Bytes, min and max of one column of one chunk (no zone map for strings and booleans)."""
    array = np.ascontiguousarray(values, dtype=spec.storage_dtype.newbyteorder("<"))
    if spec.is_string or array.dtype.kind == "b" or len(array) == 0:
        return array.tobytes(), None, None
    if array.dtype.kind == "f":
        finite = array[np.isfinite(array)]
        if len(finite) == 0:
            return array.tobytes(), None, None
        return array.tobytes(), float(finite.min()), float(finite.max())
    return array.tobytes(), float(array.min()), float(array.max())


def decode_column(spec: ColumnSpec, data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=spec.storage_dtype.newbyteorder("<"))


def index_entries(set_id: int, chunk_no: int, schema: ItemSchema, columns: Columns) -> list[dict[str, Any]]:
    """Rows of ``set_index`` for one chunk: each distinct value of each indexed column."""
    rows: list[dict[str, Any]] = []
    for name in schema.indexed:
        column = columns[name]
        values, first, counts = np.unique(column, return_index=True, return_counts=True)
        last = len(column) - 1 - np.unique(column[::-1], return_index=True)[1]
        rows.extend(
            {"set_id": set_id, "column": name, "value": v, "chunk_no": chunk_no, "count": c,
             "first_row": f, "last_row": lst}
            for v, c, f, lst in zip(values.tolist(), counts.tolist(), first.tolist(), last.tolist(), strict=True)
        )
    return rows


def concat(parts: Sequence[Columns]) -> Columns:
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def take(columns: Columns, start: int, stop: int) -> Columns:
    return {name: array[start:stop] for name, array in columns.items()}
