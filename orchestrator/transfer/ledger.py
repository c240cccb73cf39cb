"""The transfer ledger and journal in the project store.

:class:`Ledger` answers "what does this host already hold?" for many paths in a few queries.
:class:`Journal` writes one ``transfers`` row per file moved, and keeps the rows and the
ledger current while files move: updates are buffered and written at most about once a
second (and at the end), so that thousands of small files cost a few transactions, not
thousands.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, delete, insert, select, update

from orchestrator.store.engine import WRITE
from orchestrator.store.transfer_tables import TransferDirection, TransferFile, TransferRecord, TransferState
from orchestrator.transfer.plan import LedgerEntry

FILES = cast(Table, TransferFile.__table__)
RECORDS = cast(Table, TransferRecord.__table__)
_IN_CHUNK = 5000  # paths per IN (...) query (SQLite allows 32766 parameters, PostgreSQL 65535)
FLUSH_INTERVAL_S = 1.0


def now() -> datetime:
    return datetime.now(UTC)


def ensure_tables(engine: Engine) -> None:
    """Create the ledger tables in a store made before they existed (no-op otherwise)."""
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        FILES.create(conn, checkfirst=True)
        RECORDS.create(conn, checkfirst=True)


def _chunks(values: Sequence[str], size: int = _IN_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


class Ledger:
    """Per host: which remote path holds a verified copy of which local file version."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def lookup(self, host: str, remote_paths: Sequence[str]) -> dict[str, LedgerEntry]:
        found: dict[str, LedgerEntry] = {}
        columns = [FILES.c[name] for name in ("host", "remote_path", "local_path", "size", "mtime_ns",
                                              "sha256", "remote_mtime_ns", "direction")]
        with self.engine.connect() as conn:
            for chunk in _chunks(list(remote_paths)):
                query = select(*columns).where(FILES.c.host == host, FILES.c.remote_path.in_(chunk))
                for row in conn.execute(query):
                    found[row.remote_path] = LedgerEntry(*row)
        return found

    def record(self, entries: Sequence[LedgerEntry], conn: Any = None) -> None:
        """Insert or replace the entries (one per host and remote path)."""
        if not entries:
            return
        if conn is None:
            with self.engine.connect().execution_options(**WRITE) as own, own.begin():
                self.record(entries, own)
            return
        stamp = now()
        by_host: dict[str, list[str]] = {}
        for entry in entries:
            by_host.setdefault(entry.host, []).append(entry.remote_path)
        for host, paths in by_host.items():
            for chunk in _chunks(paths):
                conn.execute(delete(FILES).where(FILES.c.host == host, FILES.c.remote_path.in_(chunk)))
        latest = {(e.host, e.remote_path): e for e in entries}
        conn.execute(insert(FILES), [
            {"host": e.host, "remote_path": e.remote_path, "local_path": e.local_path, "size": e.size,
             "mtime_ns": e.mtime_ns, "sha256": e.sha256, "remote_mtime_ns": e.remote_mtime_ns,
             "direction": e.direction, "updated_at": stamp} for e in latest.values()])


_MUTABLE = ("state", "bytes_done", "resumed_from", "seconds", "method", "sha256", "error", "updated_at",
            "finished_at")


class Journal:
    """The ``transfers`` rows of one staging call, plus the ledger entries it earns; thread-safe."""

    def __init__(self, engine: Engine, host: str, run_id: int | None, step_id: int | None,
                 direction: TransferDirection, ledger: Ledger) -> None:
        self.engine = engine
        self.host = host
        self.run_id = run_id
        self.step_id = step_id
        self.direction = direction
        self.ledger = ledger
        self._rows: dict[int, dict[str, Any]] = {}
        self._dirty: set[int] = set()
        self._entries: list[LedgerEntry] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()

    def begin(self, files: Sequence[tuple[str, str, int]]) -> list[int]:
        """Queue (local path, remote path, bytes) rows; return their ids in the same order."""
        if not files:
            return []
        stamp = now()
        rows = [{"run_id": self.run_id, "step_id": self.step_id, "host": self.host,
                 "direction": self.direction.value, "local_path": local, "remote_path": remote,
                 "state": TransferState.QUEUED.value, "bytes_total": size, "bytes_done": 0, "resumed_from": 0,
                 "started_at": stamp, "updated_at": stamp} for local, remote, size in files]
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            result = conn.execute(insert(RECORDS).returning(RECORDS.c.id, sort_by_parameter_order=True), rows)
            ids = [int(row[0]) for row in result]
        with self._lock:
            for record_id, row in zip(ids, rows, strict=True):
                self._rows[record_id] = {name: row.get(name) for name in _MUTABLE}
        return ids

    def _set(self, record_id: int, **values: Any) -> None:
        with self._lock:
            self._rows[record_id].update(values, updated_at=now())
            self._dirty.add(record_id)

    def running(self, record_ids: Iterable[int], method: str) -> None:
        """Mark rows as moving; written with the next flush (about a second later at most)."""
        for record_id in record_ids:
            self._set(record_id, state=TransferState.RUNNING.value, method=method)

    def progress(self, record_id: int, bytes_done: int) -> None:
        self._set(record_id, bytes_done=bytes_done)
        if time.monotonic() - self._last_flush > FLUSH_INTERVAL_S:
            self.flush()

    def done(self, record_id: int, *, bytes_done: int, seconds: float, sha256: str, resumed_from: int = 0,
             entry: LedgerEntry | None = None) -> None:
        stamp = now()
        self._set(record_id, state=TransferState.DONE.value, bytes_done=bytes_done, seconds=seconds,
                  sha256=sha256, resumed_from=resumed_from, finished_at=stamp, error=None)
        if entry is not None:
            with self._lock:
                self._entries.append(entry)
        if time.monotonic() - self._last_flush > FLUSH_INTERVAL_S:
            self.flush()

    def failed(self, record_id: int, error: str, *, final: bool) -> None:
        """Note an error; ``final`` marks the row failed (else it stays queued for a retry)."""
        state = TransferState.FAILED if final else TransferState.QUEUED
        self._set(record_id, state=state.value, error=error[:4000], finished_at=now() if final else None)

    def flush(self) -> None:
        with self._lock:
            dirty = [{"_id": rid, **{f"v_{k}": v for k, v in self._rows[rid].items()}} for rid in self._dirty]
            entries = list(self._entries)
            self._dirty.clear()
            self._entries.clear()
            self._last_flush = time.monotonic()
        if not dirty and not entries:
            return
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            if dirty:
                conn.execute(update(RECORDS).where(RECORDS.c.id == bindparam("_id"))
                             .values({name: bindparam(f"v_{name}") for name in _MUTABLE}), dirty)
            self.ledger.record(entries, conn)
