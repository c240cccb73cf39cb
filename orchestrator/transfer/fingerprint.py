"""Fingerprints of local files: size and mtime from ``stat`` (cheap), SHA-256 of the content (read).

The ledger compares size and mtime first: when both match, the file is taken as unchanged
without reading it. Only when they differ is the content hashed, so that a file that was
touched but not changed is not sent again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class FileStat:
    """What ``stat`` says about a file: enough to tell that it did not change."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path | str) -> FileStat:
        info = os.stat(path)
        return cls(str(path), info.st_size, info.st_mtime_ns)


def hash_prefix(path: Path | str, length: int) -> tuple[hashlib._Hash, int]:
    """A SHA-256 hasher fed with the first ``length`` bytes of the file (to be continued by the
    caller), and the number of bytes it got (less than ``length`` if the file is shorter)."""
    hasher = hashlib.sha256()
    left = length
    with open(path, "rb", buffering=0) as handle:
        while left > 0:
            data = handle.read(min(CHUNK, left))
            if not data:
                break
            hasher.update(data)
            left -= len(data)
    return hasher, length - left


def sha256_file(path: Path | str) -> str:
    with open(path, "rb", buffering=0) as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()

