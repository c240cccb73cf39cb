"""Killing a step's processes: the process that ran it and everything it started."""

from __future__ import annotations

import psutil


def kill_tree(pid: int, timeout_s: float = 5.0) -> list[int]:
    """SIGTERM the process and its descendants, SIGKILL what is left after ``timeout_s``.

    Returns the pids that were signalled; a pid that no longer exists is not an error.
    """
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    procs = [*root.children(recursive=True), root]
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            continue
    _gone, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=timeout_s)
    return [p.pid for p in procs]


def is_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
