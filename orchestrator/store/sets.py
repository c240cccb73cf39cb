"""Sets of millions of items, stored column by column in the project store.

Why columns in chunks rather than one SQL row per item: a million particles with twenty
fields is twenty million values. Row storage pushes every value through the database
driver one at a time (measured here: 7.6 s to write and 6 s to read back 1M rows of 18
columns with Python's sqlite3); chunked typed columns move them as arrays: a chunk of
``chunk_size`` items is one row per column holding the array's bytes. Equality queries
on indexed columns read only the chunks the set index names; range queries skip chunks
by their zone maps (per-chunk min/max); everything else is numpy on the loaded columns.

Appends are transactional: the set header (size, chunk count, next id) is updated in the
same write transaction as the chunks, so the size is known without a scan, and concurrent
appenders (streaming steps) never interleave half-written chunks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

import numpy as np
from sqlalchemy import Connection, Engine, Table, delete, func, insert, select, update

from orchestrator.errors import NotFoundError, UsageError
from orchestrator.objects.columns import SCHEMAS, Columns, ItemSchema
from orchestrator.objects.em import Acquisition
from orchestrator.store import set_codec
from orchestrator.store.clock import now
from orchestrator.store.engine import WRITE
from orchestrator.store.schema import ItemSetRow, SetColumnChunk, SetIndexEntry, SetString, StreamState
from orchestrator.store.set_query import (
    Between,
    Condition,
    Equals,
    OneOf,
    conditions_from_kwargs,
    mask,
    typed_conditions,
)

DEFAULT_CHUNK_SIZE = 32768

_COLUMNS = cast(Table, SetColumnChunk.__table__)
_INDEX = cast(Table, SetIndexEntry.__table__)
_STRINGS = cast(Table, SetString.__table__)
_SETS = cast(Table, ItemSetRow.__table__)


def schema_for(item_type: str) -> ItemSchema:
    try:
        return SCHEMAS[item_type]
    except KeyError:
        raise UsageError(f"unknown item type {item_type!r}; known: {', '.join(sorted(SCHEMAS))}") from None


def create_set(engine: Engine, name: str, item_type: str, run_id: int | None = None,
               properties: Mapping[str, Any] | None = None,
               chunk_size: int = DEFAULT_CHUNK_SIZE) -> ItemSet:
    """Create an empty, open set of ``item_type`` items and return it."""
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        set_id = _insert_set_row(conn, name, item_type, run_id, None, properties, chunk_size)
    return ItemSet(engine, set_id)


def _insert_set_row(conn: Connection, name: str, item_type: str, run_id: int | None, step_id: int | None,
                    properties: Mapping[str, Any] | None, chunk_size: int) -> int:
    schema = schema_for(item_type)
    return int(conn.execute(insert(_SETS).values(
        run_id=run_id, step_id=step_id, name=name, item_type=item_type, size=0, n_chunks=0, next_id=1,
        chunk_size=chunk_size, stream_state=StreamState.OPEN.value,
        columns=[[c.name, c.dtype] for c in schema.columns], properties=dict(properties or {}),
        created_at=now(),
    )).inserted_primary_key[0])  # type: ignore[index]


def create_filled_set_in(conn: Connection, engine: Engine, name: str, item_type: str, columns: Mapping[str, Any],
                         properties: Mapping[str, Any] | None, run_id: int, step_id: int) -> int:
    """Create, fill and close a set inside the caller's write transaction; its id.

    Used when a step's end is recorded: the step's sets and its FINISHED state commit together,
    so a retried or re-run step never leaves a half-filled or open set behind.
    """
    set_id = _insert_set_row(conn, name, item_type, run_id, step_id, properties, DEFAULT_CHUNK_SIZE)
    item_set = ItemSet(engine, set_id, header=conn.execute(select(_SETS).where(_SETS.c.id == set_id))
                       .mappings().one())
    item_set.append_columns_in(conn, columns)
    conn.execute(update(_SETS).where(_SETS.c.id == set_id).values(stream_state=StreamState.CLOSED.value,
                                                                   closed_at=now()))
    return set_id


class ItemSet:
    """A handle on one stored set. Cheap to create; every call reads the store afresh."""

    def __init__(self, engine: Engine, set_id: int, header: Any = None) -> None:
        self.engine = engine
        self.id = set_id
        row = header
        if row is None:
            with engine.connect() as conn:
                row = conn.execute(select(_SETS).where(_SETS.c.id == set_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"set {set_id} does not exist")
        self.name: str = row["name"]
        self.item_type: str = row["item_type"]
        self.run_id: int | None = row["run_id"]
        self.chunk_size: int = row["chunk_size"]
        self.properties: dict[str, Any] = dict(row["properties"] or {})
        self.schema = schema_for(self.item_type)

    # ------------------------------------------------------------------ header
    def _header(self, conn: Connection, lock: bool = False) -> Any:
        query = select(_SETS).where(_SETS.c.id == self.id)
        if lock and conn.dialect.name == "postgresql":
            query = query.with_for_update()
        return conn.execute(query).mappings().one()

    @property
    def size(self) -> int:
        """Number of items, from the set header (no scan)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(_SETS.c.size).where(_SETS.c.id == self.id)).scalar_one())

    def __len__(self) -> int:
        return self.size

    @property
    def stream_state(self) -> StreamState:
        with self.engine.connect() as conn:
            return StreamState(conn.execute(select(_SETS.c.stream_state).where(_SETS.c.id == self.id))
                               .scalar_one())

    @property
    def acquisition(self) -> Acquisition | None:
        data = self.properties.get("acquisition")
        return Acquisition(**data) if data else None

    def close(self) -> None:
        """Mark the set complete: no more items will arrive (ends streaming)."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(update(_SETS).where(_SETS.c.id == self.id).values(
                stream_state=StreamState.CLOSED.value, closed_at=now()))

    def set_properties(self, **properties: Any) -> None:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            current = dict(self._header(conn, lock=True)["properties"] or {})
            current.update(properties)
            conn.execute(update(_SETS).where(_SETS.c.id == self.id).values(properties=current))
        self.properties = current

    # ------------------------------------------------------------------ writing
    def append(self, items: Iterable[Any]) -> int:
        """Append objects (e.g. Particle); returns how many were added."""
        items = list(items)
        if not items:
            return 0
        return self.append_columns(self.schema.to_columns(items))

    def append_columns(self, columns: Mapping[str, Any]) -> int:
        """Append items given as columns (name -> array); missing columns take defaults.

        An ``id`` column of zeros (or none at all) lets the set number the items.
        """
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:
            return 0
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            return self.append_columns_in(conn, columns)

    def append_columns_in(self, conn: Connection, columns: Mapping[str, Any]) -> int:
        """:meth:`append_columns` inside the caller's write transaction (a step's end records its
        sets and its FINISHED state in one transaction: see :mod:`orchestrator.store.lifecycle`)."""
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:
            return 0
        try:
            data = set_codec.normalise_columns(self.schema, columns, n)
        except (KeyError, ValueError) as exc:
            raise UsageError(f"set {self.name!r} ({self.item_type}): {exc.args[0]}") from None
        header = self._header(conn, lock=True)
        if header["stream_state"] == StreamState.CLOSED.value:
            raise UsageError(f"set {self.name!r} is closed: no more items can be appended")
        next_id = int(header["next_id"])
        ids = data["id"]
        if not ids.any():
            data["id"] = np.arange(next_id, next_id + n, dtype=np.int64)
        else:
            self._check_new_ids(conn, ids, next_id)
        next_id = max(next_id, int(data["id"].max()) + 1)
        self._encode_strings(conn, data)
        n_chunks = self._write_chunks(conn, data, int(header["n_chunks"]))
        conn.execute(update(_SETS).where(_SETS.c.id == self.id).values(
            size=_SETS.c.size + n, n_chunks=n_chunks, next_id=next_id))
        return n

    def _check_new_ids(self, conn: Connection, ids: np.ndarray, next_id: int) -> None:
        """Refuse ids that are 0 or negative, repeated in the batch, or already in the set.

        Every id the set holds is below its ``next_id``, so a batch of ids at or above it (the
        usual case) needs no look at the stored items; otherwise only the chunks whose id zone
        map overlaps the lower ids are read.
        """
        owner = f"set {self.name!r} ({self.item_type})"
        nonpositive, repeated = set_codec.invalid_ids(ids)
        if nonpositive.size:
            raise UsageError(f"{owner}: item ids must be 1 or more (an id column of only zeros lets the set "
                             f"number the items), got {set_codec.listed_ids(nonpositive)}")
        if repeated.size:
            raise UsageError(f"{owner}: ids given more than once in the items appended: "
                             f"{set_codec.listed_ids(repeated)}")
        lower = ids[ids < next_id]
        if not lower.size:
            return
        chunks = conn.execute(select(_COLUMNS.c.chunk_no).where(
            _COLUMNS.c.set_id == self.id, _COLUMNS.c.column == "id",
            _COLUMNS.c.max_value >= float(lower.min()), _COLUMNS.c.min_value <= float(lower.max()))).scalars().all()
        present = [np.intersect1d(lower, self._load_chunk(conn, chunk_no, ["id"], decode_strings=False)["id"])
                   for chunk_no in chunks]
        taken = np.unique(np.concatenate(present)) if present else lower[:0]
        if taken.size:
            raise UsageError(f"{owner}: ids already in the set: {set_codec.listed_ids(taken)}")

    def _encode_strings(self, conn: Connection, data: Columns) -> None:
        for spec in self.schema.columns:
            if not spec.is_string:
                continue
            known = conn.execute(
                select(_STRINGS.c.value).where(_STRINGS.c.set_id == self.id, _STRINGS.c.column == spec.name)
                .order_by(_STRINGS.c.code)).scalars().all()
            dictionary = set_codec.StringDictionary(known)
            data[spec.name], added = dictionary.encode(data[spec.name])
            if added:
                conn.execute(insert(_STRINGS), [
                    {"set_id": self.id, "column": spec.name, "code": code, "value": value}
                    for code, value in added])

    def _write_chunks(self, conn: Connection, data: Columns, n_chunks: int) -> int:
        """Fill the last chunk if it has room, then add new chunks; return the chunk count."""
        start = 0
        n = len(data["id"])
        if n_chunks:
            last = n_chunks - 1
            stored = self._load_chunk(conn, last, self.schema.names, decode_strings=False)
            room = self.chunk_size - len(stored["id"])
            if room > 0:
                start = min(room, n)
                merged = set_codec.concat([stored, set_codec.take(data, 0, start)])
                conn.execute(delete(_COLUMNS).where(_COLUMNS.c.set_id == self.id, _COLUMNS.c.chunk_no == last))
                conn.execute(delete(_INDEX).where(_INDEX.c.set_id == self.id, _INDEX.c.chunk_no == last))
                self._insert_chunk(conn, last, merged)
        while start < n:
            stop = min(start + self.chunk_size, n)
            self._insert_chunk(conn, n_chunks, set_codec.take(data, start, stop))
            n_chunks += 1
            start = stop
        return n_chunks

    def _insert_chunk(self, conn: Connection, chunk_no: int, data: Columns) -> None:
        n = len(data["id"])
        rows = []
        for spec in self.schema.columns:
            blob, low, high = set_codec.encode_column(spec, data[spec.name])
            rows.append({"set_id": self.id, "chunk_no": chunk_no, "column": spec.name, "n_items": n,
                         "item_size": spec.storage_dtype.itemsize, "data": blob, "min_value": low,
                         "max_value": high})
        conn.execute(insert(_COLUMNS), rows)
        entries = set_codec.index_entries(self.id, chunk_no, self.schema, data)
        if entries:
            conn.execute(insert(_INDEX), entries)

    # ------------------------------------------------------------------ reading
    def _strings(self, conn: Connection, column: str) -> set_codec.StringDictionary:
        values = conn.execute(
            select(_STRINGS.c.value).where(_STRINGS.c.set_id == self.id, _STRINGS.c.column == column)
            .order_by(_STRINGS.c.code)).scalars().all()
        return set_codec.StringDictionary(values)

    def _load_chunk(self, conn: Connection, chunk_no: int, names: Sequence[str],
                    decode_strings: bool = True, lookup: _StringLookup | None = None,
                    rows: tuple[int, int] | None = None) -> Columns:
        """Columns of one chunk; with ``rows=(first, last)`` only that slice of each column is read."""
        marks = ",".join("?" * len(names))
        if rows is None:
            data, params = "data", [self.id, chunk_no, *names]
        else:
            data = "substr(data, ? * item_size + 1, ? * item_size)"
            params = [rows[0], rows[1] - rows[0] + 1, self.id, chunk_no, *names]
        fetched = _raw(conn, f"SELECT \"column\", {data} FROM set_columns "
                             f"WHERE set_id = ? AND chunk_no = ? AND \"column\" IN ({marks})", params)
        result: Columns = {column: set_codec.decode_column(self.schema.by_name[column], blob)
                           for column, blob in fetched}
        if decode_strings:
            self._decode_strings(conn, result, lookup or _StringLookup(self.id))
        return result

    def _decode_strings(self, conn: Connection, block: Columns, lookup: _StringLookup) -> None:
        codes = {name: values for name, values in block.items() if self.schema.by_name[name].is_string}
        if codes:
            block.update(lookup.decode(conn, codes))

    def _candidate_chunks(self, conn: Connection,
                          conditions: Sequence[Condition]) -> dict[int, tuple[int, int] | None]:
        """Chunks that may hold matches, each with the row range that may match (None: all rows).

        Equality on indexed columns is answered by the set index, which also knows the first
        and last row of each value in each chunk; ranges are answered by the zone maps.
        """
        chunks: dict[int, tuple[int, int] | None] | None = None
        for condition in conditions:
            found: dict[int, tuple[int, int] | None] | None = None
            if isinstance(condition, (Equals, OneOf)) and condition.column in self.schema.indexed:
                values = [condition.value] if isinstance(condition, Equals) else list(condition.values)
                found = {}
                marks = ",".join("?" * len(values))
                for chunk_no, first, last in _raw(
                        conn, "SELECT chunk_no, min(first_row), max(last_row) FROM set_index "
                              f"WHERE set_id = ? AND \"column\" = ? AND value IN ({marks}) GROUP BY chunk_no",
                        [self.id, condition.column, *(int(v) for v in values)]):
                    found[chunk_no] = (first, last)
            elif isinstance(condition, Between):
                query = select(_COLUMNS.c.chunk_no).where(
                    _COLUMNS.c.set_id == self.id, _COLUMNS.c.column == condition.column)
                if condition.low is not None:
                    query = query.where(_COLUMNS.c.max_value >= condition.low)
                if condition.high is not None:
                    query = query.where(_COLUMNS.c.min_value <= condition.high)
                found = dict.fromkeys(conn.execute(query).scalars())
            if found is not None:
                chunks = found if chunks is None else _intersect(chunks, found)
        if chunks is None:
            n_chunks = conn.execute(select(_SETS.c.n_chunks).where(_SETS.c.id == self.id)).scalar_one()
            return dict.fromkeys(range(n_chunks))
        return dict(sorted(chunks.items()))

    def _check(self, names: Iterable[str]) -> None:
        unknown = sorted(set(names) - set(self.schema.by_name))
        if unknown:
            raise UsageError(f"set {self.name!r} ({self.item_type}) has no column(s) {', '.join(unknown)}; "
                             f"columns: {', '.join(self.schema.names)}")

    def iter_blocks(self, columns: Sequence[str] | None = None, where: Sequence[Condition] = (),
                    **kwargs: Any) -> Iterator[Columns]:
        """Yield the matching items chunk by chunk as numpy columns (memory stays flat).

        With conditions, only the row range the index allows is read; a chunk's condition
        columns are tested first and the others read only when something matched; strings
        are decoded for the codes actually present.
        """
        conditions = [*where, *conditions_from_kwargs(**kwargs)]
        names = list(columns) if columns is not None else self.schema.names
        condition_names = list(dict.fromkeys(c.column for c in conditions))
        self._check([*names, *condition_names])
        conditions = typed_conditions(conditions, self.schema, f"set {self.name!r} ({self.item_type})")
        lookup = _StringLookup(self.id)
        with self.engine.connect() as conn:
            for chunk_no, rows in self._candidate_chunks(conn, conditions).items():
                if not conditions:
                    yield self._load_chunk(conn, chunk_no, names, lookup=lookup)
                    continue
                if rows is not None and rows[1] - rows[0] < 4096:
                    # a narrow slice: read every needed column of it at once
                    block = self._load_chunk(conn, chunk_no, list(dict.fromkeys([*names, *condition_names])),
                                             decode_strings=False, rows=rows)
                    tested = {name: block[name] for name in condition_names}
                else:
                    block = {}
                    tested = self._load_chunk(conn, chunk_no, condition_names, decode_strings=False, rows=rows)
                self._decode_strings(conn, tested, lookup)
                selected = np.ones(len(tested[condition_names[0]]), dtype=bool)
                for condition in conditions:
                    selected &= mask(condition, tested[condition.column])
                if not selected.any():
                    continue
                rest = [name for name in names if name not in tested and name not in block]
                if rest:
                    block.update(self._load_chunk(conn, chunk_no, rest, decode_strings=False, rows=rows))
                picked = {name: block[name][selected] for name in names if name not in tested}
                self._decode_strings(conn, picked, lookup)
                picked.update({name: tested[name][selected] for name in names if name in tested})
                yield {name: picked[name] for name in names}

    def to_numpy(self, columns: Sequence[str] | None = None, where: Sequence[Condition] = (),
                 **kwargs: Any) -> Columns:
        """All matching items as one numpy array per column."""
        names = list(columns) if columns is not None else self.schema.names
        blocks = list(self.iter_blocks(names, where, **kwargs))
        if not blocks:
            return {name: np.empty(0, dtype=object if self.schema.by_name[name].is_string
                                   else self.schema.by_name[name].storage_dtype) for name in names}
        return set_codec.concat(blocks)

    def __iter__(self) -> Iterator[Any]:
        return self.iter_objects()

    def iter_objects(self, where: Sequence[Condition] = (), **kwargs: Any) -> Iterator[Any]:
        """Independent objects (e.g. Particle) for the matching items, built chunk by chunk.

        A chain of per-chunk ``map`` iterators rather than a generator: no Python frame is
        resumed per item.
        """
        schema = self.schema
        return itertools.chain.from_iterable(
            schema.objects(block) for block in self.iter_blocks(None, where, **kwargs))

    def where(self, *conditions: Condition, **kwargs: Any) -> list[Any]:
        """The matching items as a list of objects (for small selections)."""
        return list(self.iter_objects(conditions, **kwargs))

    def get(self, item_id: int) -> Any:
        """One item by its id."""
        found = self.where(Equals("id", int(item_id)))
        if not found:
            raise NotFoundError(f"set {self.name!r} has no item with id {item_id}")
        return found[0]

    def count(self, *conditions: Condition, **kwargs: Any) -> int:
        """Number of matching items (the header's size when there is no condition)."""
        if not conditions and not kwargs:
            return self.size
        return sum(len(block["id"]) for block in self.iter_blocks(["id"], conditions, **kwargs))

    def unique(self, column: str) -> np.ndarray:
        """Distinct values of one column (from the index when the column is indexed)."""
        self._check([column])
        if column in self.schema.indexed:
            with self.engine.connect() as conn:
                return np.asarray(conn.execute(
                    select(_INDEX.c.value).distinct().where(_INDEX.c.set_id == self.id,
                                                            _INDEX.c.column == column)
                    .order_by(_INDEX.c.value)).scalars().all())
        return np.unique(self.to_numpy([column])[column])

    def __repr__(self) -> str:
        return f"ItemSet(id={self.id}, name={self.name!r}, item_type={self.item_type!r})"


def _raw(conn: Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """Run a hot read query without SQL-expression overhead (it dominates millisecond queries).

    ``sql`` uses ``?`` placeholders; they become ``%s`` for drivers of the format paramstyle.
    """
    if conn.dialect.paramstyle in ("format", "pyformat"):
        sql = sql.replace("?", "%s")
    return list(conn.exec_driver_sql(sql, tuple(params)).all())


def _intersect(a: dict[int, tuple[int, int] | None],
               b: dict[int, tuple[int, int] | None]) -> dict[int, tuple[int, int] | None]:
    result: dict[int, tuple[int, int] | None] = {}
    for chunk_no in a.keys() & b.keys():
        ra, rb = a[chunk_no], b[chunk_no]
        if ra is None or rb is None:
            result[chunk_no] = ra or rb
        elif max(ra[0], rb[0]) <= min(ra[1], rb[1]):
            result[chunk_no] = (max(ra[0], rb[0]), min(ra[1], rb[1]))
    return result


class _StringLookup:
    """Decodes string codes of one set, fetching from the store only the codes not seen yet."""

    def __init__(self, set_id: int) -> None:
        self.set_id = set_id
        self.known: dict[str, dict[int, str]] = {}

    def decode(self, conn: Connection, codes: dict[str, np.ndarray]) -> Columns:
        """Decoded arrays for several string columns, with one query for the missing codes."""
        wanted = {column: np.unique(values).tolist() for column, values in codes.items()}
        missing = [(column, code) for column, values in wanted.items()
                   for code in values if code not in self.known.setdefault(column, {})]
        for start in range(0, len(missing), 400):
            part = missing[start:start + 400]
            by_column: dict[str, list[int]] = {}
            for column, code in part:
                by_column.setdefault(column, []).append(code)
            clauses = " OR ".join(f"(\"column\" = ? AND code IN ({','.join('?' * len(c))}))"
                                  for c in by_column.values())
            params: list[Any] = [self.set_id]
            for column, column_codes in by_column.items():
                params += [column, *column_codes]
            for column, code, value in _raw(conn, "SELECT \"column\", code, value FROM set_strings "
                                                  f"WHERE set_id = ? AND ({clauses})", params):
                self.known[column][code] = value
        result: Columns = {}
        for column, values in codes.items():
            known = self.known[column]
            table = np.empty((max(wanted[column]) + 1) if wanted[column] else 0, dtype=object)
            for code in wanted[column]:
                table[code] = known[code]
            result[column] = table[values] if len(values) else np.empty(0, dtype=object)
        return result


def stored_bytes(engine: Engine, set_id: int) -> int:
    """Bytes of column data held by a set (without database page overhead)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(func.length(_COLUMNS.c.data)), 0))
                                .where(_COLUMNS.c.set_id == set_id)).scalar_one())
