"""The parts of provenance that need no scheduler: fingerprints, the lineage walk over a graph,
and records kept and replaced in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from lifecycle_helpers import put_run

from orchestrator.errors import NotFoundError
from orchestrator.provenance.fingerprints import (
    FileFingerprint,
    UnreadableFile,
    fingerprint_file,
    is_path_column,
    run_output_files,
)
from orchestrator.provenance.lineage import lineage
from orchestrator.store import ProjectStore, RunState
from orchestrator.store.runs import InputLink


def test_fingerprints_are_sha256_and_size_relative_to_the_project(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # more than one read block
    (tmp_path / "runs" / "r").mkdir(parents=True)
    path = tmp_path / "runs" / "r" / "map.mrc"
    path.write_bytes(data)
    assert fingerprint_file(path, tmp_path) == FileFingerprint("runs/r/map.mrc", len(data),
                                                               hashlib.sha256(data).hexdigest())
    outside = tmp_path.parent / f"{tmp_path.name}-raw.mrc"
    outside.write_bytes(b"x")
    assert fingerprint_file(outside, tmp_path).to_dict()["path"] == str(outside)  # absolute outside the project
    missing = fingerprint_file(tmp_path / "gone.mrc", tmp_path)
    assert isinstance(missing, UnreadableFile) and missing.path == "gone.mrc" and "No such file" in missing.error


def test_a_file_read_once_is_not_read_again_until_it_changes(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "movie.mrcs"
    path.write_bytes(b"a" * 4096)
    first = fingerprint_file(path, tmp_path)
    opened: list[object] = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *args, **kw: opened.append(args[0]) or real_open(*args, **kw))
    assert fingerprint_file(path, tmp_path) == first and opened == []  # known: not read again
    stat = path.stat()
    path.write_bytes(b"b" * 4096)  # same size, new content and modification time
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = fingerprint_file(path, tmp_path)
    assert opened == [path]
    assert isinstance(second, FileFingerprint) and second.sha256 == hashlib.sha256(b"b" * 4096).hexdigest()


def test_run_output_files_leave_out_what_the_orchestrator_keeps(tmp_path: Path) -> None:
    for rel in ("a.mrc", "sub/b.star", "jobs/s.a1/outcome.json", "logs/s.log", "inputs/sets/1.npz",
                "sub/jobs/kept.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    assert [p.relative_to(tmp_path).as_posix() for p in run_output_files(tmp_path)] == [
        "a.mrc", "sub/b.star", "sub/jobs/kept.txt"]
    assert list(run_output_files(tmp_path / "none")) == []


@pytest.mark.parametrize(("column", "is_path"), [("path", True), ("image_path", True), ("micrograph_name", False),
                                                 ("pathology", False)])
def test_path_columns(column: str, is_path: bool) -> None:
    assert is_path_column(column) is is_path


def diamond(store: ProjectStore) -> dict[str, int]:
    """imp -> (a, b) -> join: the walk must list imp once, at its nearest depth."""
    imp = store.runs.create("testkit.noop", name="imp").id
    a = store.runs.create("testkit.noop", name="a", inputs=[InputLink("x", imp, "out")]).id
    b = store.runs.create("testkit.noop", name="b", inputs=[InputLink("x", imp, "other")]).id
    join = store.runs.create("testkit.noop", name="join",
                             inputs=[InputLink("left", a, "out"), InputLink("right", b, "out")]).id
    for run_id in (imp, a, b, join):
        put_run(store, run_id, RunState.FINISHED)
    return {"imp": imp, "a": a, "b": b, "join": join}


def test_lineage_lists_each_run_once_nearest_first(store_url: str) -> None:
    with ProjectStore.create(store_url, "p") as store:
        ids = diamond(store)
        store.provenance.put(ids["imp"], {"files": {"read_raw": [{"path": "raw/m.mrcs", "size": 1, "sha256": "0"}]}})
        nodes = lineage(store, "join")
        assert [(n.run, n.depth) for n in nodes] == [("join", 0), ("a", 1), ("b", 1), ("imp", 2)]
        imp = nodes[-1]
        assert imp.outputs_used == ["out", "other"] and imp.raw_files[0]["path"] == "raw/m.mrcs" and imp.recorded
        assert not nodes[0].recorded  # no record for join: said, not guessed
        with pytest.raises(NotFoundError, match="run join has no output 'map'; it has: none"):
            lineage(store, "join", "map")


def test_a_record_is_replaced_when_the_run_finishes_again(store_url: str) -> None:
    with ProjectStore.create(store_url, "p") as store:
        run_id = store.runs.create("testkit.noop", name="r").id
        assert store.provenance.get(run_id) is None
        store.provenance.put(run_id, {"n": 1})
        store.provenance.put(run_id, {"n": 2})
        assert store.provenance.get(run_id) == {"n": 2}
        store.runs.delete(run_id)
        assert store.provenance.get(run_id) is None


def test_the_recorder_writes_beside_the_caller_and_is_busy_until_done(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from orchestrator.provenance import recorder

    release = threading.Event()
    recorded: list[tuple[int, str]] = []

    def slow_record(_store: object, _project: object, _registry: object, run_id: int) -> bool:
        release.wait(10)
        recorded.append((run_id, threading.current_thread().name))
        return True

    monkeypatch.setattr(recorder, "record_provenance", slow_record)
    writer = recorder.ProvenanceRecorder(None, None, None)  # type: ignore[arg-type]
    writer.submit(1)
    writer.submit(2)
    assert writer.busy and recorded == []  # the caller went on while the first record was being read
    release.set()
    writer.close()  # waits for both
    assert not writer.busy
    assert [run_id for run_id, _thread in recorded] == [1, 2]  # in the order the runs finished
    assert all(thread.startswith("orch-provenance") for _run_id, thread in recorded)
