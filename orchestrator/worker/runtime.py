"""One attempt of one step, in the process that runs it: the public entry points of a worker.

Two ways, by where the step runs:

- :func:`run_step_task`, on the local host (the store's own machine): the worker records the
  step's transitions itself, through the lifecycle's fast path: RUNNING (worker, pid, its start
  time, GPUs) once it has run for ``RUNNING_DELAY_S``, and FINISHED (duration, peak memory,
  result, the sets it registered, in one transaction) or FAILED (exception, last log lines).
  Writing them here means a step that finished is durable even if the scheduler is killed the
  next instant, so a restarted scheduler trusts FINISHED and never runs that step again. A step
  that ends within the delay writes RUNNING and its end in one transaction.
- :func:`run_reported_step`, everywhere else (pilot workers, batch jobs, SSH hosts): nothing is
  written to the store; the attempt writes its outcome record in its attempt folder and returns
  it (see :mod:`orchestrator.worker.outcome`); the scheduler records it.

Either way every write names the attempt it belongs to (a late write of an old attempt is
refused), an attempt runs once (a second start of it is refused: dask re-runs a task whose
worker left the cluster), the step's processes carry its token and the worker leads its own
process group (see :mod:`orchestrator.worker.processes`), and the step's stdout and stderr,
including those of the programs it starts, go to its log file.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.names import LOCAL_HOST
from orchestrator.protocol import StepContext, execute_step
from orchestrator.store.schema import StepState
from orchestrator.worker.monitoring import PeakMemory, RunningMarker
from orchestrator.worker.outcome import (
    SETS_DIR,
    AttemptReplayed,
    StepOutcome,
    attempt_dir,
    mark_started,
    write_outcome,
)
from orchestrator.worker.processes import TOKEN_VARIABLE, StepProcesses, become_group_leader, process_start
from orchestrator.worker.step_output import log_tail, redirected_output

log = logging.getLogger(__name__)

#: the batch job this process runs in (a pilot, or a step's own job): every job script exports
#: its queue's own job id under this generic name (orchestrator/hosts/job_env.py, JOB_ID)
_JOB_ID_VARIABLES = ("ORCH_JOB_ID",)
_writers: dict[str, Any] = {}
_writers_lock = threading.Lock()


@dataclass
class StepPayload:
    """Everything a worker needs to run one attempt of one step (plain, picklable data).

    ``store_url`` is empty when the step cannot open the store (a SQLite store, on a host other
    than its machine); ``sets_dir`` then holds the input sets the scheduler exported for it.
    ``token`` marks the attempt's processes; ``programs`` are the host's configured commands.
    """

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
    host: str = LOCAL_HOST
    gpus: list[Any] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    token: str = ""
    programs: dict[str, list[str]] = field(default_factory=dict)
    #: version commands of the plugin's programs, to ask on this host (empty once the scheduler knows)
    version_commands: dict[str, list[str]] = field(default_factory=dict)
    sets_dir: str = ""
    #: the step's declared output files (run-relative): its outcome record lists them, so a
    #: scheduler that recovers the attempt from the record knows what to bring back
    outputs: list[str] = field(default_factory=list)


class StepFailed(Exception):
    """Raised to the scheduler when a step's function failed; the message holds the log tail."""


# ---------------------------------------------------------------------------- this process
_address: str | None = None
_started_at: float | None = None


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


def _own_start() -> float:
    """This process's start time, read once (the second half of its identity with the pid)."""
    global _started_at
    if _started_at is None:
        _started_at = process_start()
    return _started_at


def _queue_job_id() -> str | None:
    return next((os.environ[name] for name in _JOB_ID_VARIABLES if os.environ.get(name)), None)


@contextmanager
def _step_environment(payload: StepPayload) -> Iterator[None]:
    """While the step runs: its token and GPUs in the environment its processes inherit, and
    this worker as the leader of its own process group."""
    become_group_leader()
    saved = {name: os.environ.get(name) for name in (TOKEN_VARIABLE, "CUDA_VISIBLE_DEVICES")}
    if payload.token:
        os.environ[TOKEN_VARIABLE] = payload.token
    if payload.gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in payload.gpus)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _started_fields(payload: StepPayload) -> dict[str, Any]:
    fields: dict[str, Any] = {"worker": _worker_address(), "pid": os.getpid(), "proc_start": _own_start(),
                              "host": payload.host, "gpus": list(payload.gpus), "started_at": datetime.now(UTC)}
    job_id = _queue_job_id()
    if job_id:
        fields["job_id"] = job_id
    return fields


def _context(payload: StepPayload, log_path: Path, sets: Any) -> StepContext:
    return StepContext(project_dir=Path(payload.project_dir), run_id=payload.run_id, run_dir=Path(payload.run_dir),
                       step_name=payload.step_name, log_path=log_path, gpus=list(payload.gpus),
                       params=payload.params, attempt=payload.attempt,
                       sets=sets, programs={k: list(v) for k, v in payload.programs.items()})


def _failure_text(exc: BaseException, log_path: Path) -> tuple[str, str]:
    """(one-line message, the error with the log's last lines) of a failed step; the traceback
    goes to the log first."""
    with open(log_path, "a", encoding="utf-8") as log_file:
        log_file.write(traceback.format_exc())
    message = f"{type(exc).__name__}: {exc}"
    return message, f"{message}\n--- last lines of {log_path} ---\n{log_tail(log_path)}"


# ---------------------------------------------------------------------------- the local host
def _local_store(url: str) -> Any:
    """One step writer (and lifecycle) per worker process and store: opening costs a schema check."""
    from orchestrator.store.lifecycle import Lifecycle
    from orchestrator.store.project_store import ProjectStore
    from orchestrator.store.step_writer import StepWriter

    with _writers_lock:
        entry = _writers.get(url)
        if entry is None:
            store = ProjectStore.open(url)
            entry = _writers[url] = (StepWriter(store.engine), Lifecycle(store.engine, store.project_id))
        return entry


def _store_sets(payload: StepPayload) -> Any:
    from orchestrator.worker.set_sources import StoreSetSource

    return StoreSetSource(payload.store_url, payload.run_id)


def run_step_task(payload: StepPayload) -> dict[str, Any] | None:
    """Run one attempt of a step of the local host and record it; raise StepFailed on failure."""
    writer, lifecycle = _local_store(payload.store_url)
    current = writer.state(payload.step_id)
    if current is None or current[1] != payload.attempt:
        return {"skipped": "a newer attempt of this step exists"}
    if current[0] is StepState.RUNNING:
        raise AttemptReplayed(f"step {payload.step_name} attempt {payload.attempt} started once already")
    if current[0] is not StepState.QUEUED:
        return {"skipped": current[0].value}  # cancelled (or finished) before it started
    log_path = Path(payload.log_path)
    started = _started_fields(payload)
    sets = _store_sets(payload)
    ctx = _context(payload, log_path, sets)
    marker = RunningMarker.shared()
    watch = marker.watch(lambda: _mark_running(writer, payload, started))
    t0 = time.perf_counter()
    memory = PeakMemory.shared()
    try:
        with memory, _step_environment(payload), redirected_output(log_path):
            result = execute_step(payload.func, ctx, payload.args)
    except BaseException as exc:  # noqa: BLE001 - every failure of user code is recorded, then re-raised
        marked = marker.stop(watch)
        message, error = _failure_text(exc, log_path)
        if marked is not False:
            writer.fail(payload.step_id, payload.run_id, payload.attempt, message,
                        started=None if marked else started, finished_at=datetime.now(UTC),
                        duration_s=time.perf_counter() - t0, peak_memory_mb=memory.peak / 2**20, error=error)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise StepFailed(message) from None
    finally:
        close = getattr(sets, "close", None)
        if close is not None:
            close()
    marked = marker.stop(watch)
    if marked is False:
        return {"skipped": "cancelled while it ran"}
    ended = {"finished_at": datetime.now(UTC), "duration_s": time.perf_counter() - t0,
             "peak_memory_mb": memory.peak / 2**20}
    if ctx.pending_sets:  # its sets and its end in one transaction (the generic path)
        lifecycle.finish_step(payload.step_id, payload.attempt, result, ctx.pending_sets,
                              started=None if marked else started, **ended)
    else:
        writer.finish(payload.step_id, payload.run_id, payload.attempt, started=None if marked else started,
                      result=result, error=None, **ended)
    return result


def _mark_running(writer: Any, payload: StepPayload, started: dict[str, Any]) -> bool:
    """Record RUNNING; if the step was cancelled (or superseded) meanwhile, stop it as a cancel would."""
    applied = bool(writer.start(payload.step_id, payload.run_id, payload.attempt, **started))
    if not applied:
        log.warning("step %s was cancelled while it ran: ending its processes", payload.step_name)
        StepProcesses(payload.token, os.getpid(), _own_start()).kill(include_worker=payload.host == LOCAL_HOST)
    return applied


# ---------------------------------------------------------------------------- every other host
def _dask_worker() -> Any:
    """The dask worker running this task (looked up in the task's own thread), or None."""
    try:
        from distributed import get_worker

        return get_worker()
    except ValueError:  # a batch job, or a direct call: nobody to tell
        return None


def _program_versions(payload: StepPayload) -> dict[str, dict[str, str | None]]:
    """What the programs the scheduler asked about are on this host (for provenance); a version
    command that fails is reported as unknown, never as the step's failure."""
    if not payload.version_commands:
        return {}
    from orchestrator.provenance.software import ask_versions

    with _step_environment(payload):
        return ask_versions(payload.version_commands)


def announce_running(payload: StepPayload, started: dict[str, Any], dask_worker: Any = None) -> bool:
    """Tell the scheduler, through a dask event, that the step runs; False outside a dask worker.

    ``dask_worker`` is the task's worker when called from another thread (the running marker's):
    dask finds the current worker from the task's thread only; its ``log_event`` is thread-safe.
    """
    dask_worker = dask_worker or _dask_worker()
    if dask_worker is None:
        return False
    dask_worker.log_event(RUNNING_TOPIC, {
        "step_id": payload.step_id, "run_id": payload.run_id, "attempt": payload.attempt,
        **{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in started.items()}})
    return True


RUNNING_TOPIC = "orch-step-running"


def _reported_sets(payload: StepPayload) -> Any:
    """Where a step that cannot open the store reads its input sets."""
    if payload.store_url:
        return _store_sets(payload)  # a server store (PostgreSQL) this host reaches
    if payload.sets_dir:
        from orchestrator.worker.set_sources import ExportedSetSource

        return ExportedSetSource(Path(payload.sets_dir))
    return None


def run_reported_step(payload: StepPayload) -> StepOutcome:
    """Run one attempt away from the store: write its outcome record and return it (see module doc).

    The payload's paths are as this host sees them. A failure of the step is an outcome
    (``ok=False``), never an exception: a dask retry of a failed step cannot happen behind the
    scheduler's back, and the scheduler still knows where the log is.
    """
    folder = attempt_dir(payload.run_dir, payload.step_name, payload.attempt)
    mark_started(folder)
    log_path = Path(payload.log_path)
    started = _started_fields(payload)
    sets = _reported_sets(payload)
    ctx = _context(payload, log_path, sets)
    # As on the local host, a step that ends within the marker's delay is not announced at all:
    # its outcome carries its start, and the scheduler records both with one write.
    marker = RunningMarker.shared()
    dask_worker = _dask_worker()
    watch = marker.watch(lambda: announce_running(payload, started, dask_worker))
    t0 = time.perf_counter()
    memory = PeakMemory.shared()
    result: dict[str, Any] | None = None
    error: str | None = None
    try:
        with memory, _step_environment(payload), redirected_output(log_path):
            result = execute_step(payload.func, ctx, payload.args)
    except KeyboardInterrupt:
        raise  # the worker itself is being stopped: not the step's failure
    except BaseException as exc:  # noqa: BLE001 - every failure of user code becomes the outcome
        error = _failure_text(exc, log_path)[0]
    finally:
        marker.stop(watch)
        close = getattr(sets, "close", None)
        if close is not None:
            close()
    programs = _program_versions(payload)
    saved: list[str] = []
    if error is None and ctx.pending_sets:
        from orchestrator.store.set_files import save_pending_set

        for pending in ctx.pending_sets:
            saved.append(save_pending_set(pending, folder / SETS_DIR).name)
    outcome = StepOutcome(
        step_id=payload.step_id, run_id=payload.run_id, attempt=payload.attempt, ok=error is None, result=result,
        error=error, log_path=str(log_path), log_tail=log_tail(log_path), started_at=started["started_at"],
        duration_s=time.perf_counter() - t0, peak_memory_mb=memory.peak / 2**20, worker=started["worker"],
        pid=started["pid"], proc_start=started["proc_start"], host=payload.host, job_id=started.get("job_id"),
        gpus=list(payload.gpus), sets=saved, outputs=list(payload.outputs), programs=programs)
    write_outcome(folder, outcome)
    return outcome
