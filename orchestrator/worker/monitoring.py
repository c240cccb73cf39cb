"""What a worker watches while a step runs: its peak memory, and when to record it as running."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import psutil

log = logging.getLogger(__name__)

RUNNING_DELAY_S = 0.03
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class PeakMemory:
    """Peak RSS of this worker process and its children while a step runs.

    One sampler thread per worker process, started on first use: sampling only runs while
    a step is active, and a step that ends before the first sample costs two reads of
    this process's own RSS (listing children walks /proc, far too slow for no-op steps).
    Those two reads are one ``pread`` of ``/proc/self/statm`` each where it exists: psutil
    opens and parses the file every time, about 15 times slower.
    """

    _instance: PeakMemory | None = None

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.peak = 0
        self._statm: tuple[int, int] | None = None  # (pid that opened it, fd)
        self._active = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)
        self._thread.start()

    @classmethod
    def shared(cls) -> PeakMemory:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _own_rss(self) -> int:
        pid = os.getpid()
        if self._statm is None or self._statm[0] != pid:  # first use, or a forked child
            try:
                self._statm = pid, os.open("/proc/self/statm", os.O_RDONLY)
            except OSError:
                return int(self.process.memory_info().rss)
        return int(os.pread(self._statm[1], 128, 0).split()[1]) * _PAGE_SIZE

    def _rss_with_children(self) -> int:
        total = self._own_rss()
        for child in self.process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while True:
            self._active.wait()
            time.sleep(self.interval_s)
            if self._active.is_set():
                self.peak = max(self.peak, self._rss_with_children())

    def __enter__(self) -> PeakMemory:
        self.peak = self._own_rss()
        self._active.set()
        return self

    def __exit__(self, *exc: object) -> None:
        self._active.clear()
        self.peak = max(self.peak, self._own_rss())


class _Watch:
    """One step under a :class:`RunningMarker`: when to mark it, how, and what came of it."""

    def __init__(self, deadline: float, mark: Callable[[], bool]) -> None:
        self.deadline = deadline
        self.mark = mark
        self.marked: bool | None = None  # True: RUNNING recorded; False: refused; None: not written


class RunningMarker:
    """Records RUNNING for the step in progress once it has run for ``delay_s``.

    Most steps of a big run end within milliseconds; writing RUNNING and then FINISHED is
    two write transactions per step, and nobody reads the first before the second lands.
    So a step that ends within the delay records both at its end, in one transaction, and
    a longer one is marked RUNNING by this process's one marker thread: ``orch status``
    shows it running and ``orch cancel`` finds its pid as before, ``delay_s`` later. The
    thread sleeps while no step runs and wakes about once per ``delay_s`` while steps run.
    """

    _instance: RunningMarker | None = None

    def __init__(self, delay_s: float = RUNNING_DELAY_S) -> None:
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._current: _Watch | None = None
        self._thread = threading.Thread(target=self._run, name="running-marker", daemon=True)
        self._thread.start()

    @classmethod
    def shared(cls) -> RunningMarker:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def watch(self, mark: Callable[[], bool]) -> _Watch:
        """Call ``mark`` (which writes RUNNING) if the step is still running after the delay."""
        watch = _Watch(time.monotonic() + self.delay_s, mark)
        with self._lock:
            self._current = watch
            self._wake.set()
        return watch

    def stop(self, watch: _Watch) -> bool | None:
        """The step ended: no marking from now on; whether RUNNING was recorded (see _Watch).

        Waits for a mark being written, so that the step's end is written after it.
        """
        with self._lock:
            if self._current is watch:
                self._current = None
            return watch.marked

    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                watch = self._current
                if watch is None:
                    self._wake.clear()  # under the lock: a watch() cannot slip in between
                    continue
            time.sleep(max(0.0, watch.deadline - time.monotonic()))
            with self._lock:
                if self._current is not watch:
                    continue  # it ended meanwhile (and maybe another step started)
                self._current = None
                try:
                    watch.marked = watch.mark()
                except Exception:  # noqa: BLE001 - the end is then written with RUNNING, as for a short step
                    log.exception("could not record a step as running")
