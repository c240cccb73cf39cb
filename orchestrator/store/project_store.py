"""The project store: one database holding a project's runs, steps, outputs, sets and events.

``ProjectStore.create(url, name)`` makes a new store; ``ProjectStore.open(url)`` opens an
existing one after checking that it really is a store, that its schema is not newer than
this code, and upgrading it when it is older. A plain file path means SQLite.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Engine, Table, insert, select
from sqlalchemy.exc import DatabaseError, OperationalError

from orchestrator.errors import NotFoundError, UsageError
from orchestrator.store import migrations
from orchestrator.store.clock import now
from orchestrator.store.credentials import redact, refuse_password
from orchestrator.store.engine import WRITE, is_sqlite, make_engine, sqlite_path, sqlite_url
from orchestrator.store.errors import CorruptStoreError, NotAStoreError, StoreError
from orchestrator.store.host_health import HostHealthTable
from orchestrator.store.lifecycle import Lifecycle
from orchestrator.store.provenance import HostProgramsTable, RunProvenanceTable
from orchestrator.store.runs import EventLog, OutputTable, RunTable, StepTable
from orchestrator.store.schema import ItemSetRow, Project, User

if TYPE_CHECKING:
    from orchestrator.store.sets import ItemSet


def normalise_url(url_or_path: str | Path) -> str:
    text = str(url_or_path)
    return text if "://" in text else sqlite_url(text)


def _display(url: str) -> str:
    """What messages and ``orch project info`` show of a store: its file, or its URL with any password hidden."""
    path = sqlite_path(url)
    return str(path) if path is not None else redact(url)


def _check_sqlite_file(url: str, must_exist: bool) -> None:
    """Refuse a missing file, a directory or a file that is not an SQLite database, by name.

    The check goes through SQLite itself (a read-only connection), never a plain open() of
    the file: closing any descriptor of a file drops every POSIX lock this process holds on
    it, including those of open store connections, and another process could then remove
    the write-ahead log under them. SQLite tracks its descriptors per inode and does not.
    """
    path = sqlite_path(url)
    if path is None:
        return
    if not path.exists():
        if must_exist:
            raise NotFoundError(f"{path}: no such project store")
        return
    if path.is_dir():
        raise NotAStoreError(f"{path}: is a directory, not a project store")
    if not must_exist:
        return
    if path.stat().st_size == 0:
        raise NotAStoreError(f"{path}: empty file, not a project store")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            connection.execute("PRAGMA schema_version").fetchone()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise NotAStoreError(f"{path}: not a project store (not an SQLite database)") from None
        raise CorruptStoreError(f"{path}: the store is damaged ({exc}); restore it from a backup") from None


class ProjectStore:
    """Access to one project's store; ``runs``, ``steps``, ``outputs`` and ``events`` do the work."""

    def __init__(self, url: str, engine: Engine, project_id: int) -> None:
        self.url = url
        self.engine = engine
        self.project_id = project_id
        self.runs = RunTable(engine, project_id)
        self.steps = StepTable(engine, project_id)
        self.outputs = OutputTable(engine, project_id)
        self.events = EventLog(engine, project_id)
        #: every change of a run's or step's state goes through it
        self.lifecycle = Lifecycle(engine, project_id)
        #: whether each host answers, as the scheduler last saw it
        self.hosts = HostHealthTable(engine, project_id)
        #: what each finished run was: software, params, hosts, jobs, file fingerprints
        self.provenance = RunProvenanceTable(engine, project_id)
        self.host_programs = HostProgramsTable(engine, project_id)

    @property
    def where(self) -> str:
        return _display(self.url)

    # ------------------------------------------------------------------ open / create
    @classmethod
    def create(cls, url_or_path: str | Path, project_name: str, description: str | None = None) -> ProjectStore:
        url = normalise_url(url_or_path)
        refuse_password(url, "store URL")  # the URL goes into payloads and messages
        _check_sqlite_file(url, must_exist=False)
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(url)
        try:
            if _has_tables(engine):
                migrations.check_and_upgrade(engine, _display(url))
            else:
                migrations.create_schema(engine)
            with engine.connect().execution_options(**WRITE) as conn, conn.begin():
                existing = conn.execute(select(Project.id).where(Project.name == project_name)).scalar()
                if existing is not None:
                    raise UsageError(f"{_display(url)}: a project named {project_name!r} already exists")
                project_id = conn.execute(insert(cast(Table, Project.__table__)).values(
                    name=project_name, description=description, created_at=now())).inserted_primary_key[0]  # type: ignore[index]
        except DatabaseError as exc:
            engine.dispose()
            raise _database_error(url, exc) from None
        except BaseException:
            engine.dispose()
            raise
        return cls(url, engine, int(project_id))

    @classmethod
    def open(cls, url_or_path: str | Path, project_name: str | None = None) -> ProjectStore:
        """Open an existing store (the only project in it, or ``project_name``)."""
        url = normalise_url(url_or_path)
        refuse_password(url, "store URL")  # the URL goes into payloads and messages
        _check_sqlite_file(url, must_exist=True)
        engine = make_engine(url)
        try:
            migrations.check_and_upgrade(engine, _display(url))
            with engine.connect() as conn:
                query = select(Project.id, Project.name).order_by(Project.id)
                if project_name is not None:
                    query = query.where(Project.name == project_name)
                rows = conn.execute(query).all()
        except DatabaseError as exc:
            engine.dispose()
            raise _database_error(url, exc) from None
        except BaseException:
            engine.dispose()
            raise
        if not rows:
            engine.dispose()
            what = f"project {project_name!r}" if project_name else "any project"
            raise NotFoundError(f"{_display(url)}: the store holds no {what}")
        if len(rows) > 1 and project_name is None:
            engine.dispose()
            names = ", ".join(r.name for r in rows)
            raise UsageError(f"{_display(url)}: the store holds several projects ({names}); name one")
        return cls(url, engine, int(rows[0].id))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ProjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sets
    def create_set(self, name: str, item_type: str, run_id: int | None = None,
                   properties: Mapping[str, Any] | None = None, chunk_size: int | None = None) -> ItemSet:
        from orchestrator.store.sets import DEFAULT_CHUNK_SIZE, create_set

        return create_set(self.engine, name, item_type, run_id, properties, chunk_size or DEFAULT_CHUNK_SIZE)

    def get_set(self, set_id: int) -> ItemSet:
        from orchestrator.store.sets import ItemSet

        return ItemSet(self.engine, set_id)

    def list_sets(self, run_id: int | None = None) -> list[dict[str, Any]]:
        table = cast(Table, ItemSetRow.__table__)
        query = select(table.c.id, table.c.run_id, table.c.name, table.c.item_type, table.c.size,
                       table.c.stream_state).order_by(table.c.id)
        if run_id is not None:
            query = query.where(table.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # ------------------------------------------------------------------ users
    def add_user(self, name: str, full_name: str | None = None, email: str | None = None) -> int:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            existing = conn.execute(select(User.id).where(User.name == name)).scalar()
            if existing is not None:
                return int(existing)
            return int(conn.execute(insert(cast(Table, User.__table__)).values(
                name=name, full_name=full_name, email=email, created_at=now())).inserted_primary_key[0])  # type: ignore[index]

    def users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(cast(Table, User.__table__)).order_by(User.id)).mappings()]


def _has_tables(engine: Engine) -> bool:
    from sqlalchemy import inspect

    with engine.connect() as conn:
        return bool(inspect(conn).get_table_names())


def _database_error(url: str, exc: DatabaseError) -> StoreError:
    message = str(exc.orig) if exc.orig is not None else str(exc)
    where = _display(url)
    if isinstance(exc, OperationalError) and not is_sqlite(url):
        return StoreError(f"{where}: cannot reach the database: {message.strip()}")
    if "malformed" in message or "not a database" in message or "corrupt" in message:
        return CorruptStoreError(f"{where}: the store is damaged ({message}); restore it from a backup")
    return StoreError(f"{where}: {message}")
