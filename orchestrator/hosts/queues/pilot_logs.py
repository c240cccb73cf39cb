"""What a pilot job's own log says went wrong: the first error lines, for the message that
reports a pilot whose dask worker never connected.

dask-jobqueue writes each pilot's output in the pilots folder (``pilots/<host>/`` of the
project), named by each queue's own convention for output and error files, or
``<job name>-<job id>.log`` where the prologue redirects it (see
:mod:`orchestrator.hosts.queues.pilots`). Whatever the convention, the job id is in the name:
a file is found by it, and a name that looks like an error stream is read first.
"""

from __future__ import annotations

import re
from pathlib import Path

#: the words of a line that tells what went wrong (a shell, python, dask, module systems)
ERROR_LINE = re.compile(r"(?i)(error|exception|traceback|not found|no such file|permission denied|cannot|can't|"
                        r"failed|refused|timed? ?out|unreachable|killed|fatal)")
_STDERR_NAME = re.compile(r"(\.err|\.e[0-9]+)$")
_READ_BYTES = 1 << 20
_LINE_CHARS = 300


def pilot_log_files(log_dir: Path, job_id: str) -> list[Path]:
    """The files of ``log_dir`` whose name holds ``job_id`` as a whole number (stderr first)."""
    if not log_dir.is_dir():
        return []
    whole = re.compile(rf"(?<![0-9]){re.escape(job_id)}(?![0-9])")
    found = [path for path in log_dir.iterdir() if path.is_file() and whole.search(path.name)]
    return sorted(found, key=lambda path: (not _STDERR_NAME.search(path.name), path.name))


def first_error_lines(log_dir: Path, job_id: str, limit: int = 3) -> tuple[list[str], list[Path]]:
    """The first ``limit`` lines that look like errors in the job's log files (else the last
    lines of the log), and the files read."""
    files = pilot_log_files(log_dir, job_id)
    errors: list[str] = []
    last: list[str] = []
    for path in files:
        try:
            with path.open("rb") as stream:
                text = stream.read(_READ_BYTES).decode(errors="replace")
        except OSError:
            continue
        lines = [line.strip()[:_LINE_CHARS] for line in text.splitlines() if line.strip()]
        errors += [line for line in lines if ERROR_LINE.search(line)]
        last += lines[-limit:]
    return (errors or last)[:limit], files
