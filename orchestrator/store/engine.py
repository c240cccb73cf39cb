"""Database engines for the project store: SQLite (WAL, immediate write transactions) or PostgreSQL.

SQLite is the embedded default. Many processes write one project at once (the scheduler,
``orch`` commands, the web server, streaming steps), so:

* WAL mode lets readers run while one process writes;
* a long busy timeout makes a writer wait for the lock instead of failing;
* write transactions start with ``BEGIN IMMEDIATE``: they take the write lock up front, so
  a transaction never has to upgrade a read snapshot to a write (the upgrade is the case
  SQLite answers with "database is locked" at once, whatever the timeout).

Read-only work uses plain deferred transactions and never blocks writers.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from orchestrator.store.credentials import check_password_files

BUSY_TIMEOUT_S = 120.0
WRITE = {"begin_mode": "IMMEDIATE"}  # execution option for write transactions on SQLite


def sqlite_url(path: Path | str) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the settings the project store relies on."""
    if is_sqlite(url):
        return _sqlite_engine(url)
    check_password_files()  # libpq would ignore a pgpass file others can read, and fail obscurely
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let us emit BEGIN ourselves (pysqlite's own BEGIN is always DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("begin_mode", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
