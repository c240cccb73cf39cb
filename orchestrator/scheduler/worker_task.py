"""What runs inside a dask worker for one attempt of one step.

The worker records the step's own transitions in the project store: RUNNING (worker, pid,
GPUs) when it starts and FINISHED (duration, peak memory, result) or FAILED (exception,
last log lines) when it ends. Writing them here rather than in the scheduler means a step
that finished is durable even if the scheduler is killed the next instant, which is what
lets a restarted scheduler trust FINISHED and never run that step again.

The step's stdout and stderr, including those of programs it starts, go to its log file:
the worker redirects file descriptors 1 and 2 for the duration of the step. Local workers
run one thread each, so that redirection belongs to the step alone.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from orchestrator.protocol import StepContext, execute_step
from orchestrator.store import ProjectStore, StepState
from orchestrator.store.step_writer import StepWriter

LOG_TAIL_LINES = 30
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


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:  # not inside a dask worker (direct call, batch job)
        return f"{socket.gethostname()}:{os.getpid()}"


class PeakMemory:
    """Peak RSS of this worker process and its children while a step runs.

    One sampler thread per worker process, started on first use: sampling only runs while
    a step is active, and a step that ends before the first sample costs two reads of
    this process's own RSS (listing children walks /proc, far too slow for no-op steps).
    """

    _instance: PeakMemory | None = None

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.peak = 0
        self._active = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)
        self._thread.start()

    @classmethod
    def shared(cls) -> PeakMemory:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _rss_with_children(self) -> int:
        total = self.process.memory_info().rss
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
        self.peak = self.process.memory_info().rss
        self._active.set()
        return self

    def __exit__(self, *exc: object) -> None:
        self._active.clear()
        self.peak = max(self.peak, self.process.memory_info().rss)


@contextmanager
def _redirected_output(log_path: Path) -> Iterator[None]:
    """Send fds 1 and 2 (and Python's sys.stdout/err) to the step's log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
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


def run_step_task(payload: StepPayload) -> dict[str, Any] | None:
    """Run one attempt of one step and record its transitions; raise StepFailed on failure."""
    writer = _writer(payload.store_url)
    log_path = Path(payload.log_path)
    if payload.gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in payload.gpus)
    started = datetime.now(UTC)
    applied = writer.transition(
        payload.step_id, payload.run_id, StepState.RUNNING, expected=(StepState.QUEUED, StepState.PENDING),
        worker=_worker_address(), pid=os.getpid(), host=payload.host, gpus=payload.gpus,
        started_at=started, attempt=payload.attempt)
    if not applied:  # cancelled (or taken by someone else) before it could start
        return {"skipped": True}
    ctx = StepContext(project_dir=Path(payload.project_dir), run_id=payload.run_id,
                      run_dir=Path(payload.run_dir), step_name=payload.step_name, log_path=log_path,
                      gpus=list(payload.gpus), params=payload.params, store_url=payload.store_url,
                      attempt=payload.attempt)
    t0 = time.perf_counter()
    memory = PeakMemory.shared()
    try:
        with memory, _redirected_output(log_path):
            result = execute_step(payload.func, ctx, payload.args)
    except BaseException as exc:  # noqa: BLE001 - every failure of user code is recorded, then re-raised
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(traceback.format_exc())
        message = f"{type(exc).__name__}: {exc}"
        tail = log_tail(log_path)
        writer.transition(
            payload.step_id, payload.run_id, StepState.FAILED, message=message, expected=(StepState.RUNNING,),
            finished_at=datetime.now(UTC), duration_s=time.perf_counter() - t0,
            peak_memory_mb=memory.peak / 2**20, error=f"{message}\n--- last lines of {log_path} ---\n{tail}")
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise StepFailed(message) from None
    writer.transition(
        payload.step_id, payload.run_id, StepState.FINISHED, expected=(StepState.RUNNING,),
        finished_at=datetime.now(UTC), duration_s=time.perf_counter() - t0,
        peak_memory_mb=memory.peak / 2**20, result=result, error=None)
    return result
