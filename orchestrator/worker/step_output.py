"""A step's output: its stdout and stderr (and its programs') go to its log file."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_TAIL_LINES = 30


def _open_log(log_path: Path) -> int:
    """Open (create) the step's log for appending; its folder is made only when missing."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    try:
        return os.open(log_path, flags, 0o666)
    except FileNotFoundError:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(log_path, flags, 0o666)


@contextmanager
def redirected_output(log_path: Path) -> Iterator[None]:
    """Send fds 1 and 2 (and Python's sys.stdout/err) to the step's log file."""
    sys.stdout.flush()
    sys.stderr.flush()
    log_fd = _open_log(log_path)
    saved = os.dup(1), os.dup(2)
    with open(log_fd, "ab", buffering=0) as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
