"""Step hashes and file fingerprints: the cheap answer to "has this step already run so?".

A step's hash covers what decides its result: the function (import path *and* source
text, so editing the function re-runs it), its arguments (canonical JSON) and the
fingerprints of the files it reads. It deliberately leaves out the step's name, its
resources and retry count: moving a step to a bigger node does not change what it computes.
It does not follow the function's callees either; editing a helper the step calls does
not change the hash (bump an argument such as ``version`` when that matters).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.protocol.errors import FingerprintError, StepFunctionError
from orchestrator.protocol.steps import Step, load_function

HASH_VERSION = 1
EDGE_BYTES = 1 << 20
"""Files larger than twice this are fingerprinted from their first and last EDGE_BYTES."""

_READ_CHUNK = 1 << 20
_source_cache: dict[str, tuple[tuple[str, int], str]] = {}


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal data gives equal text, hence equal hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def fingerprint_file(path: str | os.PathLike[str]) -> str:
    """``SIZE:MTIME_NS:SHA256`` of a file, cheap enough for millions of particles' stacks.

    Trade-off: files up to ``2 * EDGE_BYTES`` are hashed whole; bigger ones (movies,
    stacks of several GB) only over their first and last ``EDGE_BYTES``, so fingerprinting
    costs at most 2 MiB of reading per file. An edit in the middle of a big file that keeps
    its size *and* its modification time (e.g. copied with ``cp -p`` / ``rsync -t`` over a
    different file) goes unnoticed; any ordinary write changes ``mtime_ns`` and is caught.
    The reverse cost: touching a file (new mtime, same bytes) counts as a change.
    """
    try:
        stat = os.stat(path)
        if not os.path.isfile(path):
            raise FingerprintError(f"cannot fingerprint {path}: not a regular file")
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            if stat.st_size <= 2 * EDGE_BYTES:
                while chunk := handle.read(_READ_CHUNK):
                    digest.update(chunk)
            else:
                digest.update(handle.read(EDGE_BYTES))
                handle.seek(-EDGE_BYTES, os.SEEK_END)
                digest.update(handle.read(EDGE_BYTES))
    except OSError as exc:
        raise FingerprintError(f"cannot fingerprint {path}: {exc.strerror or exc}") from exc
    return f"{stat.st_size}:{stat.st_mtime_ns}:{digest.hexdigest()}"


def fingerprint_path(path: str | os.PathLike[str]) -> str:
    """Fingerprint of a file, or of a directory as the sorted fingerprints of all its files."""
    root = Path(path)
    if not root.is_dir():
        return fingerprint_file(root)
    digest = hashlib.sha256()
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            full = Path(dirpath, filename)
            relative = full.relative_to(root).as_posix()
            digest.update(f"{relative}\0{fingerprint_file(full)}\n".encode())
            count += 1
    return f"dir:{count}:{digest.hexdigest()}"


def function_source(func_path: str) -> str:
    """Source text of a step function, as ``inspect`` sees it now.

    Cached per function and source file modification time, so hashing 10k steps of one
    function reads the source once. Functions without Python source (builtins, extension
    modules) fall back to their compiled code, or fail with a clear error.
    """
    func = load_function(func_path)
    try:
        filename = inspect.getsourcefile(func) or ""
        key = (filename, os.stat(filename).st_mtime_ns) if filename else ("", 0)
    except (TypeError, OSError):
        key = ("", 0)
    cached = _source_cache.get(func_path)
    if cached is not None and cached[0] == key and key[0]:
        return cached[1]
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        code = getattr(func, "__code__", None)
        if code is None:
            raise StepFunctionError(
                f"cannot read the source of step function {func_path}; step functions must be Python"
            ) from None
        source = f"<code {code.co_code.hex()} {code.co_consts!r}>"
    _source_cache[func_path] = (key, source)
    return source


def step_hash(step: Step, input_fingerprints: Mapping[str, str]) -> str:
    """sha256 (hex) of a step's function path and source, args and input fingerprints.

    ``input_fingerprints`` maps each path of ``step.inputs`` (exactly as written there) to
    its fingerprint (see :func:`fingerprint_path`); extra entries are ignored, so the
    scheduler may pass one mapping for a whole run. A missing one is an error, because a
    hash without it would claim an unchanged input it never looked at.
    """
    missing = [path for path in step.inputs if path not in input_fingerprints]
    if missing:
        raise FingerprintError(f"step '{step.name}': no fingerprint given for input(s) {missing}")
    document = {
        "v": HASH_VERSION,
        "func": step.func,
        "source": function_source(step.func),
        "args": step.args,
        "inputs": sorted([path, input_fingerprints[path]] for path in set(step.inputs)),
    }
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()
