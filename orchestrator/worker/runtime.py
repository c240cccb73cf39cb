"""What runs inside a dask worker for one attempt of one step.

The worker records the step's own transitions in the project store: RUNNING (worker, pid,
GPUs) once it has run for ``RUNNING_DELAY_S``, and FINISHED (duration, peak memory, result)
or FAILED (exception, last log lines) when it ends. Writing them here rather than in the
scheduler means a step that finished is durable even if the scheduler is killed the next
instant, which is what lets a restarted scheduler trust FINISHED and never run that step
again. A step that ends within the delay writes RUNNING and its end in one transaction (the
same row and events): most steps of a big run are that short, and a second commit per step
was the largest cost of the worker's side (see :class:`RunningMarker`).

The step's stdout and stderr, including those of programs it starts, go to its log file:
the worker redirects file descriptors 1 and 2 for the duration of the step. Local workers
run one thread each, so that redirection belongs to the step alone.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from orchestrator.protocol import StepContext, execute_step
from orchestrator.store import ProjectStore, StepState
from orchestrator.store.step_writer import StepWriter
from orchestrator.worker.processes import kill_tree

log = logging.getLogger("orchestrator.worker")

LOG_TAIL_LINES = 30
RUNNING_DELAY_S = 0.03
LOCAL_HOST = "local"  # the host whose steps ``orch cancel`` kills by pid (control.cancel_run)
# RUNNING too: dask runs an attempt again when the worker that had it left the cluster (a
# pilot stopped by its queue, a worker that retired); that attempt's first run is gone with it.
_STARTABLE = (StepState.QUEUED, StepState.PENDING, StepState.RUNNING)
#: the batch job this process runs in (a pilot, or a step's own job), as the queue names it
_JOB_ID_VARIABLES = ("SLURM_JOB_ID", "JOB_ID", "PBS_JOBID")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_writers: dict[str, StepWriter] = {}
_writers_lock = threading.Lock()


@dataclass
class StepPayload:
    """Everything a worker needs to run one attempt of one step (plain, picklable data)."""

    store_url: str
    project_dir: str
    run_id: int
    run_dir: str
    step_id: int
    step_name: str
    func: str
    args: dict[str, Any]
    attempt: int
    log_path: str
    host: str = "local"
    gpus: list[int] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


class StepFailed(Exception):
    """Raised to the scheduler when a step's function failed; the message holds the log tail."""


def _writer(url: str) -> StepWriter:
    """One step writer per worker process and store (opening a store costs a schema check)."""
    with _writers_lock:
        writer = _writers.get(url)
        if writer is None:
            writer = _writers[url] = StepWriter(ProjectStore.open(url).engine)
        return writer


_address: str | None = None


def _worker_address() -> str:
    """This process's dask worker address, looked up once (it is fixed for the process's life)."""
    global _address
    if _address is None:
        try:
            from distributed import get_worker

            _address = str(get_worker().address)
        except ValueError:  # not inside a dask worker (direct call, batch job)
            return f"{socket.gethostname()}:{os.getpid()}"
    return _address


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


def _open_log(log_path: Path) -> int:
    """Open (create) the step's log for appending; its folder is made only when missing."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    try:
        return os.open(log_path, flags, 0o666)
    except FileNotFoundError:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(log_path, flags, 0o666)


@contextmanager
def _redirected_output(log_path: Path) -> Iterator[None]:
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


def _queue_job_id() -> str | None:
    return next((os.environ[name] for name in _JOB_ID_VARIABLES if os.environ.get(name)), None)


def _mark_running(writer: StepWriter, payload: StepPayload, started: dict[str, Any]) -> bool:
    """Record RUNNING; if the step was cancelled meanwhile, stop it as a cancel would have."""
    applied = writer.transition(payload.step_id, payload.run_id, StepState.RUNNING, expected=_STARTABLE, **started)
    if not applied:
        _stop_cancelled_step(payload)
    return applied


def _stop_cancelled_step(payload: StepPayload) -> None:
    """Kill what a step cancelled before it was marked RUNNING started (its canceller saw no pid).

    Every canceller kills the processes of the steps it finds RUNNING; ``orch cancel`` also
    kills the worker process of a local step, so a local step kills itself here too. Elsewhere
    the worker stays, as after an SSH host's cancel, and its record of the end is refused.
    """
    log.warning("step %s was cancelled while it ran: killing its processes", payload.step_name)
    if payload.host == LOCAL_HOST:
        kill_tree(os.getpid())
        return
    for child in psutil.Process().children():
        kill_tree(child.pid)


def _record_end(writer: StepWriter, payload: StepPayload, marked: bool | None, started: dict[str, Any],
                state: StepState, message: str | None = None, **fields: Any) -> None:
    """Write the step's end, with its start too when the step ended before it was marked RUNNING."""
    if marked:
        writer.transition(payload.step_id, payload.run_id, state, expected=(StepState.RUNNING,), message=message,
                          **fields)
    elif marked is None:
        writer.transition(payload.step_id, payload.run_id, state, expected=_STARTABLE, message=message,
                          via=StepState.RUNNING, **started, **fields)
    # marked is False: the step was taken from this worker (cancelled) while it ran; record nothing


def run_step_task(payload: StepPayload) -> dict[str, Any] | None:
    """Run one attempt of one step and record its transitions; raise StepFailed on failure."""
    writer = _writer(payload.store_url)
    if writer.state(payload.step_id) not in _STARTABLE:  # cancelled (or taken by someone else) before it started
        return {"skipped": True}
    log_path = Path(payload.log_path)
    if payload.gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in payload.gpus)
    started = {"worker": _worker_address(), "pid": os.getpid(), "host": payload.host, "gpus": payload.gpus,
               "started_at": datetime.now(UTC), "attempt": payload.attempt}
    job_id = _queue_job_id()
    if job_id:
        started["job_id"] = job_id
    ctx = StepContext(project_dir=Path(payload.project_dir), run_id=payload.run_id,
                      run_dir=Path(payload.run_dir), step_name=payload.step_name, log_path=log_path,
                      gpus=list(payload.gpus), params=payload.params, store_url=payload.store_url,
                      attempt=payload.attempt)
    marker = RunningMarker.shared()
    watch = marker.watch(lambda: _mark_running(writer, payload, started))
    t0 = time.perf_counter()
    memory = PeakMemory.shared()
    try:
        with memory, _redirected_output(log_path):
            result = execute_step(payload.func, ctx, payload.args)
    except BaseException as exc:  # noqa: BLE001 - every failure of user code is recorded, then re-raised
        marked = marker.stop(watch)
        with open(log_path, "a", encoding="utf-8") as log_file:
            log_file.write(traceback.format_exc())
        message = f"{type(exc).__name__}: {exc}"
        tail = log_tail(log_path)
        _record_end(writer, payload, marked, started, StepState.FAILED, message=message,
                    finished_at=datetime.now(UTC), duration_s=time.perf_counter() - t0,
                    peak_memory_mb=memory.peak / 2**20, error=f"{message}\n--- last lines of {log_path} ---\n{tail}")
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise StepFailed(message) from None
    _record_end(writer, payload, marker.stop(watch), started, StepState.FINISHED,
                finished_at=datetime.now(UTC), duration_s=time.perf_counter() - t0,
                peak_memory_mb=memory.peak / 2**20, result=result, error=None)
    return result
