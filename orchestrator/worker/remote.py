"""What runs on a remote dask worker for one attempt of one step, on a host that neither shares
the project's files nor reaches the project store.

Unlike :func:`orchestrator.worker.runtime.run_step_task`, nothing is written to the
store here: the worker only runs the step, in the host's copy of the project (paths in the
step's arguments rewritten by a :class:`PathMap`), and returns a :class:`RemoteOutcome`. The
scheduler's own process records the transitions and brings the outputs and the log back.
A step failure is an outcome too (``ok=False``), never an exception: the scheduler then
still knows where the log is, and a dask retry of a failed user step cannot happen behind
the scheduler's back.

When the step starts, the worker announces it with a dask event (topic :data:`RUNNING_TOPIC`)
so that the scheduler can record RUNNING at once, long before the outcome arrives.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from orchestrator.protocol import StepContext, execute_step
from orchestrator.worker.runtime import PeakMemory, StepPayload, _redirected_output, _worker_address, log_tail

RUNNING_TOPIC = "orch-step-running"


def _under(text: str, root: str) -> bool:
    return text == root or text.startswith(root + "/")


@dataclass(frozen=True)
class PathMap:
    """The project folder here and its copy on the host; strings naming paths inside one are
    rewritten into the other (exact prefix, on path boundaries: ``/p/proj2`` is not under ``/p/proj``).

    ``extra`` holds further (local prefix, remote prefix) pairs, for staged inputs that live
    outside the project (raw movies on an acquisition disk); the longest prefix wins.
    """

    local_project_dir: str
    remote_project_dir: str
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name in ("local_project_dir", "remote_project_dir"):
            value = os.fspath(getattr(self, name))
            if not value.startswith("/"):
                raise ValueError(f"PathMap.{name} must be an absolute path, got {value!r}")
            object.__setattr__(self, name, value.rstrip("/") or "/")
        object.__setattr__(self, "extra", tuple((a.rstrip("/"), b.rstrip("/")) for a, b in self.extra))

    @property
    def _pairs(self) -> list[tuple[str, str]]:
        pairs = [(self.local_project_dir, self.remote_project_dir), *self.extra]
        return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)

    def _map(self, value: Any, pairs: list[tuple[str, str]]) -> Any:
        if isinstance(value, str):
            for source, target in pairs:
                if _under(value, source):
                    return target + value[len(source):]
            return value
        if isinstance(value, PurePath):
            return type(value)(self._map(str(value), pairs))
        if isinstance(value, Mapping):
            return {key: self._map(item, pairs) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._map(item, pairs) for item in value)
        return value

    def to_remote(self, value: Any) -> Any:
        """``value`` (a string, or lists/dicts of them, recursively) with local paths made remote."""
        return self._map(value, self._pairs)

    def to_local(self, value: Any) -> Any:
        """The reverse of :meth:`to_remote`, for what a step returns."""
        reverse = [(remote, local) for local, remote in self._pairs]
        return self._map(value, sorted(reverse, key=lambda pair: len(pair[0]), reverse=True))


@dataclass
class RemoteOutcome:
    """How one attempt of a step ended on a remote host (plain, picklable data).

    ``result`` is the step's result with paths already mapped back to this machine;
    ``error`` is ``"ExceptionType: message"`` when ``ok`` is false; ``log_tail`` the last
    lines of the step's log on the host (``remote_log_path``), traceback included.
    """

    ok: bool
    result: dict[str, Any] | None
    error: str | None
    log_tail: str
    started_at: datetime
    duration_s: float
    peak_memory_mb: float
    worker: str
    pid: int
    remote_log_path: str


def remote_log_path(path_map: PathMap, payload: StepPayload) -> PurePosixPath:
    """Where the step's log is on the host: ``<remote run dir>/logs/<step>.log``."""
    return PurePosixPath(path_map.to_remote(payload.run_dir)) / "logs" / f"{payload.step_name}.log"


def announce_running(payload: StepPayload, worker: str, started_at: datetime) -> bool:
    """Tell the scheduler, through a dask event, that the step runs; False outside a dask worker."""
    try:
        from distributed import get_worker

        dask_worker = get_worker()
    except ValueError:  # called directly (tests, a batch job): nobody to tell
        return False
    dask_worker.log_event(RUNNING_TOPIC, {
        "step_id": payload.step_id, "run_id": payload.run_id, "attempt": payload.attempt,
        "step_name": payload.step_name, "host": payload.host, "worker": worker, "pid": os.getpid(),
        "gpus": list(payload.gpus), "started_at": started_at.isoformat()})
    return True


def _reachable_store(url: str) -> str:
    """A server store (PostgreSQL) may be reachable from the host; a SQLite file here is not."""
    return url if url.startswith(("postgresql", "postgres:")) else ""


def run_remote_step(payload: StepPayload, path_map: PathMap) -> RemoteOutcome:
    """Run one attempt of one step in the host's copy of the project; see the module docstring.

    ``payload`` is the same as for a shared-file-system host, with local paths; its
    ``store_url`` reaches the step only for a PostgreSQL store (the host may reach the server);
    a SQLite store lives on this machine's disk, so the step sees an empty one.
    """
    run_dir = Path(path_map.to_remote(payload.run_dir))
    log_path = Path(remote_log_path(path_map, payload))
    if payload.gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in payload.gpus)
    worker = _worker_address()
    started = datetime.now(UTC)
    announce_running(payload, worker, started)
    ctx = StepContext(project_dir=Path(path_map.remote_project_dir), run_id=payload.run_id, run_dir=run_dir,
                      step_name=payload.step_name, log_path=log_path, gpus=list(payload.gpus),
                      params=path_map.to_remote(payload.params), store_url=_reachable_store(payload.store_url),
                      attempt=payload.attempt)
    args = path_map.to_remote(payload.args)
    t0 = time.perf_counter()
    memory = PeakMemory.shared()
    result: dict[str, Any] | None = None
    error: str | None = None
    try:
        with memory, _redirected_output(log_path):
            result = execute_step(payload.func, ctx, args)
    except KeyboardInterrupt:
        raise  # the worker itself is being stopped: not the step's failure
    except BaseException as exc:  # noqa: BLE001 - every failure of user code becomes the outcome
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(traceback.format_exc())
        error = f"{type(exc).__name__}: {exc}"
    return RemoteOutcome(
        ok=error is None, result=path_map.to_local(result) if result is not None else None, error=error,
        log_tail=log_tail(log_path), started_at=started, duration_s=time.perf_counter() - t0,
        peak_memory_mb=memory.peak / 2**20, worker=worker, pid=os.getpid(), remote_log_path=str(log_path))
