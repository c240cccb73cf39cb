"""Pure decisions of staging: what moves, where it goes, how work is split, where a resume starts."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from orchestrator.errors import UsageError
from orchestrator.transfer.fingerprint import FileStat, hash_prefix, sha256_file
from orchestrator.transfer.plan import (
    Action,
    LedgerEntry,
    decide_download,
    decide_upload,
    expand_local,
    local_path_for,
    remote_path_for,
    remote_still_there,
    resume_offset,
    split_work,
)

ENTRY = LedgerEntry("box", "/w/a.mrc", "/p/a.mrc", 100, 5_000, "ab" * 32, remote_mtime_ns=7_000)


@pytest.mark.parametrize(("local", "entry", "expected"), [
    (FileStat("/p/a.mrc", 100, 5_000), None, Action.SEND),  # never sent
    (FileStat("/p/a.mrc", 100, 5_000), ENTRY, Action.SKIP),  # unchanged: no read at all
    (FileStat("/p/a.mrc", 101, 5_000), ENTRY, Action.SEND),  # size changed: surely different
    (FileStat("/p/a.mrc", 100, 6_000), ENTRY, Action.CHECK_HASH),  # touched: hash decides
    (FileStat("/q/a.mrc", 100, 5_000), ENTRY, Action.CHECK_HASH),  # another file at that remote path
])
def test_decide_upload(local: FileStat, entry: LedgerEntry | None, expected: Action) -> None:
    assert decide_upload(local, entry) is expected


def test_decide_download() -> None:
    here = FileStat("/p/a.mrc", 100, 5_000)
    assert decide_download(100, 7_000, here, ENTRY) is Action.SKIP
    assert decide_download(100, 7_001, here, ENTRY) is Action.SEND  # recomputed on the host
    assert decide_download(100, 7_000, None, ENTRY) is Action.SEND  # local copy deleted
    assert decide_download(100, 7_000, FileStat("/p/a.mrc", 100, 5_001), ENTRY) is Action.SEND  # local edited
    assert decide_download(100, 7_000, here, None) is Action.SEND


def test_remote_still_there() -> None:
    assert remote_still_there(ENTRY, (100, 7_000))
    assert not remote_still_there(ENTRY, None)
    assert not remote_still_there(ENTRY, (99, 7_000))
    assert not remote_still_there(ENTRY, (100, 8_000))


@pytest.mark.parametrize(("partial", "total", "matches", "offset"), [
    (0, 1000, True, 0), (400, 1000, True, 400), (400, 1000, False, 0), (1000, 1000, True, 1000),
    (1200, 1000, True, 0),  # a partial longer than the file is someone else's: start over
])
def test_resume_offset(partial: int, total: int, matches: bool, offset: int) -> None:
    assert resume_offset(partial, total, matches) == offset


def test_remote_paths_follow_the_project_layout(tmp_path: Path) -> None:
    work = PurePosixPath("/scratch/me/proj")
    assert remote_path_for(tmp_path / "runs/a/x.mrc", tmp_path, work) == work / "runs/a/x.mrc"
    assert remote_path_for(Path("/data/raw/m1.tif"), tmp_path, work) == work / "_abs/data/raw/m1.tif"
    assert local_path_for("/scratch/out/run3/extra/c.star", "/scratch/out", tmp_path) == tmp_path / "run3/extra/c.star"
    with pytest.raises(UsageError, match="not below"):
        local_path_for("/elsewhere/c.star", "/scratch/out", tmp_path)


def test_split_work_puts_large_files_alone_and_balances_batches() -> None:
    items = [(f"s{i}", 100) for i in range(10)] + [("big1", 5_000), ("big2", 9_000)]
    large, batches = split_work(items, parallel=4, large=1_000)
    assert large == ["big2", "big1"]
    assert len(batches) == 4 and sorted(len(b) for b in batches) == [2, 2, 3, 3]
    assert sorted(x for b in batches for x in b) == sorted(f"s{i}" for i in range(10))
    _, capped = split_work([(f"s{i}", 10) for i in range(100)], parallel=2, large=1_000, max_batch_files=20)
    assert len(capped) == 5 and all(len(b) == 20 for b in capped)
    assert split_work([("one", 5)], parallel=4) == ([], [["one"]])
    assert split_work([], parallel=4) == ([], [])


def test_expand_local_walks_directories_and_skips_partial_copies(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/b.mrc", "d/a.mrc", "d/sub/c.mrc", "d/a.mrc.orch-part", "e.star"):
        (tmp_path / name).write_text("x")
    files = expand_local([tmp_path / "d", tmp_path / "e.star", tmp_path / "d" / "a.mrc"])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["d/a.mrc", "d/b.mrc", "d/sub/c.mrc", "e.star"]
    with pytest.raises(UsageError, match="nope"):
        expand_local([tmp_path / "nope"])


def test_fingerprints(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abcdef")
    hasher, got = hash_prefix(path, 3)
    assert got == 3
    hasher.update(b"def")
    assert hasher.hexdigest() == sha256_file(path)
    assert hash_prefix(path, 100)[1] == 6
    assert FileStat.of(path).size == 6
