"""Opening something that is not a usable store gives a clear error naming it, never a traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import update

from orchestrator.cli import main
from orchestrator.errors import NotFoundError
from orchestrator.store import CorruptStoreError, NewerSchemaError, NotAStoreError, ProjectStore, migrations
from orchestrator.store.schema import SchemaInfo


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=f"{tmp_path}/nope.sqlite: no such project store"):
        ProjectStore.open(tmp_path / "nope.sqlite")


def test_text_file_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("just some notes\n" * 10)
    with pytest.raises(NotAStoreError, match="notes.sqlite: not a project store"):
        ProjectStore.open(path)


def test_foreign_sqlite_database_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(NotAStoreError, match="other.sqlite: not an em-orchestrator project store"):
        ProjectStore.open(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    with ProjectStore.create(path, "p") as store, store.engine.begin() as conn:
        conn.execute(update(SchemaInfo).where(SchemaInfo.key == "schema_version").values(value="99"))
    with pytest.raises(NewerSchemaError, match="store.sqlite: written by a newer em-orchestrator.*99"):
        ProjectStore.open(path)


def test_old_schema_is_upgraded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "store.sqlite"
    ProjectStore.create(path, "p").close()
    applied: list[int] = []

    current = migrations.SCHEMA_VERSION

    def upgrade_to_next(conn: object) -> None:
        applied.append(current)

    monkeypatch.setattr(migrations, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(migrations.UPGRADES, current, upgrade_to_next)
    with ProjectStore.open(path) as store, store.engine.connect() as conn:
        assert migrations.stored_version(conn, "x") == current + 1
    assert applied == [current]
    with ProjectStore.open(path):  # already upgraded: nothing runs again
        pass
    assert applied == [current]


def test_corrupted_store(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    with ProjectStore.create(path, "p") as store:
        for i in range(200):
            store.runs.create("testkit.noop", {"i": i, "pad": "x" * 500})
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(path.read_bytes())
    for offset in range(4096, len(data), 4096):  # scribble over every page but the header page
        data[offset:offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptStoreError, match="store.sqlite: the store is damaged"):
        with ProjectStore.open(path) as store:
            store.runs.list()


def test_cli_reports_bad_store_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "project.json").write_text('{"name": "proj", "store_url": "%s"}' % (folder / "store.sqlite"))
    (folder / "store.sqlite").write_bytes(b"\x00" * 100)
    assert main(["project", "info", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "store.sqlite: not a project store" in err and "Traceback" not in err
