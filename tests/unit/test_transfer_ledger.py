"""The transfer ledger and journal in real project stores (SQLite, PostgreSQL), and the status read from them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from orchestrator.store import ProjectStore
from orchestrator.store.transfer_tables import TransferDirection
from orchestrator.transfer.ledger import FILES, RECORDS, Journal, Ledger, ensure_tables
from orchestrator.transfer.plan import LedgerEntry
from orchestrator.transfer.progress import ProgressTracker
from orchestrator.transfer.status import transfer_status


@pytest.fixture
def store(store_url: str) -> Iterator[ProjectStore]:
    """Once on SQLite, once on PostgreSQL (conftest's ``store_url``)."""
    with ProjectStore.create(store_url, "p") as opened:
        ensure_tables(opened.engine)  # idempotent: create_schema made them already
        yield opened


def _entry(path: str, host: str = "box", size: int = 10) -> LedgerEntry:
    return LedgerEntry(host, f"/w/{path}", f"/p/{path}", size, 1_000, "cd" * 32, 2_000, "in")


def test_ledger_records_and_replaces_per_host(store: ProjectStore) -> None:
    ledger = Ledger(store.engine)
    ledger.record([_entry(f"f{i}") for i in range(1200)] + [_entry("f1", host="other")])
    found = ledger.lookup("box", [f"/w/f{i}" for i in range(1500)])
    assert len(found) == 1200 and found["/w/f7"] == _entry("f7")
    ledger.record([_entry("f7", size=99)])
    assert ledger.lookup("box", ["/w/f7"])["/w/f7"].size == 99
    assert list(ledger.lookup("other", ["/w/f1", "/w/f7"])) == ["/w/f1"]


def test_journal_buffers_updates_and_writes_the_ledger_with_them(store: ProjectStore) -> None:
    run = store.runs.create("x", {})
    ledger = Ledger(store.engine)
    journal = Journal(store.engine, "box", run.id, 4, TransferDirection.IN, ledger)
    ids = journal.begin([("/p/a", "/w/a", 10), ("/p/b", "/w/b", 20)])
    journal.running(ids, "batch/paramiko")
    journal.done(ids[0], bytes_done=10, seconds=0.5, sha256="ab" * 32, entry=_entry("a"))
    journal.failed(ids[1], "connection lost", final=True)
    with store.engine.connect() as conn:  # buffered: not yet written
        assert conn.execute(select(RECORDS.c.state).order_by(RECORDS.c.id)).scalars().all() == ["queued"] * 2
    journal.flush()
    with store.engine.connect() as conn:
        rows = conn.execute(select(RECORDS).order_by(RECORDS.c.id)).mappings().all()
        assert [r["state"] for r in rows] == ["done", "failed"]
        assert rows[0]["seconds"] == 0.5 and rows[1]["error"] == "connection lost"
        assert rows[0]["run_id"] == run.id and rows[0]["step_id"] == 4 and rows[0]["method"] == "batch/paramiko"
        assert conn.execute(select(FILES.c.remote_path)).scalars().all() == ["/w/a"]


def test_status_shows_active_calls_with_speed_and_left_and_stalls(store: ProjectStore) -> None:
    run = store.runs.create("x", {})
    journal = Journal(store.engine, "box", run.id, None, TransferDirection.OUT, Ledger(store.engine))
    ids = journal.begin([("/p/a", "/w/a", 1000), ("/p/b", "/w/b", 3000)])
    journal.running(ids[:1], "stream/openssh")
    journal.done(ids[0], bytes_done=1000, seconds=1.0, sha256="00" * 32)
    journal.running(ids[1:], "stream/openssh")
    journal.progress(ids[1], 1000)
    journal.flush()
    with store.engine.begin() as conn:  # pretend the call began 10 s ago
        conn.execute(update(RECORDS).values(started_at=datetime.now(UTC) - timedelta(seconds=10)))
    now = datetime.now(UTC)
    data = transfer_status(store.engine, store.project_id, now=now)
    (call,) = data["active"]
    assert call["files_total"] == 2 and call["files_done"] == 1 and call["bytes_left"] == 2000
    assert 150 < call["speed_bps"] < 250 and call["eta_s"] is not None and not call["stalled"]
    assert call["moving"] == ["/w/b"]
    later = transfer_status(store.engine, store.project_id, now=now + timedelta(minutes=5))
    assert later["active"][0]["stalled"]
    assert transfer_status(store.engine, store.project_id, run_id=run.id + 1) == {"active": [], "recent": []}
    journal.done(ids[1], bytes_done=3000, seconds=9.0, sha256="00" * 32)
    journal.flush()
    data = transfer_status(store.engine, store.project_id)
    assert data["active"] == [] and data["recent"][0]["files_done"] == 2


def test_progress_tracker_throttles_and_reports_speed() -> None:
    seen = []
    tracker = ProgressTracker("in", 1000, 2, seen.append, interval=0.05)
    tracker.add_bytes(50, "a")  # the first call reports
    tracker.interval = 3600.0  # however slow the machine, the next calls come within the interval
    for _ in range(9):
        tracker.add_bytes(50, "a")
    assert len(seen) == 1  # throttled
    tracker.interval = 0.05
    time.sleep(0.06)  # longer than the interval (a sleep never returns early): the next call reports
    tracker.add_bytes(500, "b")
    assert len(seen) == 2
    tracker.file_done(2)
    tracker.finish()
    last = seen[-1]
    assert last.finished and last.bytes_done == 1000 and last.files_done == 2 and last.current == "b"
    assert last.speed_bps > 0 and last.bytes_left == 0
