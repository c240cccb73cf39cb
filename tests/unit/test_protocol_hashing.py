"""step_hash and file fingerprints: what changes a hash, and what must not."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.protocol import (
    FingerprintError,
    Resources,
    Step,
    StepContext,
    canonical_json,
    fingerprint_file,
    fingerprint_path,
    hashing,
    step_hash,
)


def align(ctx: StepContext, n: int = 0, mode: str = "fast") -> dict[str, Any]:
    return {"n": n}


def other(ctx: StepContext, n: int = 0, mode: str = "fast") -> dict[str, Any]:
    return {"n": n}


FUNC = f"{__name__}:align"
FPS = {"/data/a.mrc": "10:1:aa", "/data/b.mrc": "10:1:bb"}


def make(**changes: Any) -> Step:
    fields: dict[str, Any] = {
        "name": "align",
        "func": FUNC,
        "args": {"n": 1, "mode": "fast"},
        "inputs": ("/data/a.mrc", "/data/b.mrc"),
    }
    fields.update(changes)
    return Step(**fields)


def test_hash_is_stable_and_hex() -> None:
    first = step_hash(make(), FPS)
    assert first == step_hash(make(), dict(FPS)) and len(first) == 64
    int(first, 16)


def test_hash_ignores_arg_order_name_resources_retries_and_extra_fingerprints() -> None:
    base = step_hash(make(), FPS)
    assert step_hash(make(args={"mode": "fast", "n": 1}), FPS) == base
    assert step_hash(make(name="renamed", resources=Resources(cpus=8, gpus=2), retries=5), FPS) == base
    assert step_hash(make(), {**FPS, "/data/unrelated": "1:1:cc"}) == base
    assert step_hash(make(inputs=("/data/b.mrc", "/data/a.mrc")), FPS) == base


def test_hash_changes_with_args_function_and_inputs() -> None:
    base = step_hash(make(), FPS)
    changed = {
        step_hash(make(args={"n": 2, "mode": "fast"}), FPS),
        step_hash(make(args={"n": 1, "mode": "fast", "extra": None}), FPS),
        step_hash(make(func=f"{__name__}:other"), FPS),
        step_hash(make(), {**FPS, "/data/b.mrc": "10:2:bb"}),
        step_hash(make(inputs=("/data/a.mrc",)), FPS),
    }
    assert base not in changed and len(changed) == 5


def test_missing_input_fingerprint_is_an_error() -> None:
    with pytest.raises(
        FingerprintError, match=r"step 'align': no fingerprint given for input\(s\) \['/data/b.mrc'\]"
    ):
        step_hash(make(), {"/data/a.mrc": "x"})


def test_editing_the_function_source_changes_the_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module_file = tmp_path / "orch_hash_probe.py"
    body = "def run(ctx, n=0):\n    return {{'n': n * {factor}}}\n"
    module_file.write_text(body.format(factor=2))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    module = importlib.import_module("orch_hash_probe")
    try:
        step = Step("s", "orch_hash_probe:run", {"n": 1})
        before = step_hash(step, {})
        assert step_hash(step, {}) == before
        module_file.write_text(body.format(factor=3))
        stat = module_file.stat()
        os.utime(module_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
        importlib.reload(module)
        after = step_hash(step, {})
        assert after != before
        assert "n * 3" in hashing.function_source("orch_hash_probe:run")
    finally:
        sys.modules.pop("orch_hash_probe", None)


def test_canonical_json_sorts_keys_and_rejects_nan() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == '{"a":[1,{"c":3,"d":2}],"b":1}'
    with pytest.raises(ValueError):
        canonical_json(float("nan"))


def _set_mtime(path: Path, mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_fingerprint_small_file_sees_content_size_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"abcd")
    _set_mtime(path, 1_000_000_000)
    first = fingerprint_file(path)
    assert first.startswith("4:1000000000:") and fingerprint_file(path) == first
    path.write_bytes(b"abce")  # same size ...
    _set_mtime(path, 1_000_000_000)  # ... and same mtime: only the content hash differs
    assert fingerprint_file(path) != first
    _set_mtime(path, 2_000_000_000)
    assert fingerprint_file(path).startswith("4:2000000000:")


def test_fingerprint_big_file_reads_only_its_edges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashing, "EDGE_BYTES", 16)
    path = tmp_path / "movie.tif"
    data = bytearray(b"h" * 16 + b"m" * 64 + b"t" * 16)
    path.write_bytes(bytes(data))
    _set_mtime(path, 5)
    base = fingerprint_file(path)
    data[40] = ord("X")  # the documented trade-off: a middle edit with size and mtime kept
    path.write_bytes(bytes(data))
    _set_mtime(path, 5)
    assert fingerprint_file(path) == base
    data[-1] = ord("X")  # an edit in the last EDGE_BYTES is seen
    path.write_bytes(bytes(data))
    _set_mtime(path, 5)
    assert fingerprint_file(path) != base


def test_fingerprint_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FingerprintError, match=f"cannot fingerprint {tmp_path / 'gone.mrc'}"):
        fingerprint_file(tmp_path / "gone.mrc")
    with pytest.raises(FingerprintError, match="not a regular file"):
        fingerprint_file(tmp_path)


def test_fingerprint_directory(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "sub" / "b.txt").write_text("b")
    first = fingerprint_path(tmp_path)
    assert first.startswith("dir:2:") and fingerprint_path(tmp_path) == first
    (tmp_path / "sub" / "b.txt").write_text("B")
    assert fingerprint_path(tmp_path) != first
    assert fingerprint_path(tmp_path / "a.txt") == fingerprint_file(tmp_path / "a.txt")
