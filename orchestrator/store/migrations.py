"""Schema versioning: create a store at the current version, upgrade old ones, refuse newer ones.

The version lives in ``schema_info``. Each upgrade is a function from version N to N+1,
registered in :data:`UPGRADES`, run in its own write transaction, so an old project opens
after the schema changed and an interrupted upgrade leaves the store at a consistent version.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, insert, inspect, select, text, update

from orchestrator.store import transfer_tables  # noqa: F401  (registers its tables on Base)
from orchestrator.store.engine import WRITE
from orchestrator.store.errors import NewerSchemaError, NotAStoreError
from orchestrator.store.schema import Base, SchemaInfo

APP_NAME = "em-orchestrator"
SCHEMA_VERSION = 4

Upgrade = Callable[[Connection], None]


def _upgrade_1_to_2(conn: Connection) -> None:
    """Attempt fencing and process identity (steps), the step that made a set, host health."""
    conn.execute(text("ALTER TABLE steps ADD COLUMN failed_attempts INTEGER NOT NULL DEFAULT 0"))
    conn.execute(text("ALTER TABLE steps ADD COLUMN proc_start FLOAT"))
    conn.execute(text("ALTER TABLE sets ADD COLUMN step_id INTEGER"))
    Base.metadata.tables["host_health"].create(conn, checkfirst=True)


def _upgrade_2_to_3(conn: Connection) -> None:
    """The provenance record of each finished run; runs made before it have none."""
    Base.metadata.tables["run_provenance"].create(conn, checkfirst=True)


def _upgrade_3_to_4(conn: Connection) -> None:
    """The versions of the external programs on each execution host, for provenance."""
    Base.metadata.tables["host_programs"].create(conn, checkfirst=True)


#: version N -> the function upgrading N to N+1
UPGRADES: dict[int, Upgrade] = {1: _upgrade_1_to_2, 2: _upgrade_2_to_3, 3: _upgrade_3_to_4}

_SQLITE_APPEND_ONLY = (
    "CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
)
_PG_APPEND_ONLY = (
    "CREATE OR REPLACE FUNCTION orch_events_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'events are append-only'; END $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS events_append_only ON events",
    "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events "
    "FOR EACH ROW EXECUTE FUNCTION orch_events_append_only()",
)


def create_schema(engine: Engine) -> None:
    """Create every table at the current version (idempotent)."""
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        Base.metadata.create_all(conn)
        statements = _PG_APPEND_ONLY if engine.dialect.name == "postgresql" else _SQLITE_APPEND_ONLY
        for statement in statements:
            conn.execute(text(statement))
        existing = dict(conn.execute(select(SchemaInfo.key, SchemaInfo.value)).all())
        if not existing:
            conn.execute(insert(SchemaInfo), [
                {"key": "app", "value": APP_NAME},
                {"key": "schema_version", "value": str(SCHEMA_VERSION)},
            ])


def stored_version(conn: Connection, where: str) -> int:
    """The schema version of an existing store; NotAStoreError if it is not one."""
    if not inspect(conn).has_table("schema_info"):
        raise NotAStoreError(f"{where}: not an em-orchestrator project store (no schema_info table)")
    info = dict(conn.execute(select(SchemaInfo.key, SchemaInfo.value)).all())
    if info.get("app") != APP_NAME or "schema_version" not in info:
        raise NotAStoreError(f"{where}: not an em-orchestrator project store (schema_info says {info})")
    return int(info["schema_version"])


def check_and_upgrade(engine: Engine, where: str) -> int:
    """Bring the store at ``where`` to :data:`SCHEMA_VERSION`; return the version found."""
    with engine.connect() as conn:
        found = stored_version(conn, where)
    if found > SCHEMA_VERSION:
        raise NewerSchemaError(
            f"{where}: written by a newer em-orchestrator (schema version {found}, this one knows "
            f"up to {SCHEMA_VERSION}); upgrade em-orchestrator to open it"
        )
    for version in range(found, SCHEMA_VERSION):
        upgrade = UPGRADES.get(version)
        if upgrade is None:
            raise NewerSchemaError(f"{where}: no upgrade step from schema version {version}")
        with engine.connect().execution_options(**WRITE) as conn, conn.begin():
            upgrade(conn)
            conn.execute(
                update(SchemaInfo).where(SchemaInfo.key == "schema_version").values(value=str(version + 1))
            )
    return found
