"""Nothing stuck: what the executors use to notice that a step cannot go on, and to say so.

A step's task waits in the dask scheduler of its host's cluster. It may wait for ever there
when no worker can take it: the workers that had its resources are gone (an SSH host lost,
pilots that never connect, a local worker that is not restarted), so the task sits in dask's
``no-worker`` state, or ``queued`` while no worker runs at all. Each executor looks at its
cluster on every scheduler loop (:func:`cluster_view`, one call to the dask scheduler, which
lives in the scheduler's process), decides with what it knows of its host how long such a wait
may last, and then ends the task with :class:`StepStranded` (:func:`fail_tasks`). The task's
future errs like that of a dead worker's task: the scheduler records the attempt as failed
("worker lost: StepStranded: ...") and retries the step while its budget lasts, through its
usual path.

Tasks *running* on a worker that leaves need nothing from here: every cluster has
``allowed-failures = 0``, so dask fails them (``KilledWorker``) the moment it removes the
worker (its connection closed, or :func:`remove_workers` for one known to be gone).

A host's state as the scheduler sees it goes to the store's host health table
(:class:`HealthReport`), which ``orch status`` and ``orch queue`` show.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client
from sqlalchemy.exc import OperationalError

from orchestrator.errors import OrchestratorError
from orchestrator.hosts.config.model import LivenessConfig
from orchestrator.names import LOCAL_HOST
from orchestrator.store import ProjectStore
from orchestrator.store.host_health import HostState

log = logging.getLogger(__name__)

#: how often an executor looks at its cluster (at most; the scheduler loop calls more often)
WATCH_INTERVAL_S = 1.0
#: how long a call to the in-process dask scheduler may take before the look is skipped
VIEW_TIMEOUT_S = 10.0


class StepStranded(OrchestratorError):
    """A step's task was ended because no worker of its host could take it (the message says why)."""


@dataclass(frozen=True)
class WorkerSeen:
    """A worker as the dask scheduler knows it."""

    name: str
    #: seconds since the scheduler last heard from it (its heartbeat)
    silent_s: float


@dataclass(frozen=True)
class ClusterView:
    """What one look at a dask scheduler found: its workers, and the tasks that no worker can take now."""

    workers: dict[str, WorkerSeen] = field(default_factory=dict)
    #: task key -> its resource restrictions ({} for none)
    stranded: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def worker_names(self) -> set[str]:
        return {str(seen.name) for seen in self.workers.values()}


def _view_on_scheduler(dask_scheduler: Any) -> dict[str, Any]:
    """Runs on the dask scheduler's event loop: its workers and its stranded tasks, as plain data."""
    now = time.time()
    workers = {address: (str(ws.name), max(0.0, now - ws.last_seen)) for address, ws in dask_scheduler.workers.items()}
    stranded = {str(ts.key): dict(ts.resource_restrictions or {}) for ts in dask_scheduler.unrunnable}
    if not dask_scheduler.running:  # no worker runs: the queued tasks wait for one too
        stranded.update({str(ts.key): dict(ts.resource_restrictions or {}) for ts in dask_scheduler.queued})
    return {"workers": workers, "stranded": stranded}


def cluster_view(client: Client) -> ClusterView | None:
    """The workers and stranded tasks of ``client``'s scheduler; None when it cannot be asked now
    (it is closing, or did not answer within :data:`VIEW_TIMEOUT_S`)."""
    # Client.run_on_scheduler with a deadline (the public call has none): a scheduler whose event
    # loop is stuck must not stop the scheduler's own loop, from which this is called.
    try:
        raw = client.sync(client._run_on_scheduler, _view_on_scheduler, callback_timeout=VIEW_TIMEOUT_S)
    except (OSError, RuntimeError) as exc:  # CommClosedError and TimeoutError are OSErrors
        log.info("cannot look at the dask scheduler now: %s", exc)
        return None
    return ClusterView({address: WorkerSeen(name, silent) for address, (name, silent) in raw["workers"].items()},
                       raw["stranded"])


def _fail_on_scheduler(dask_scheduler: Any, keys: list[str], message: str) -> list[str]:
    """Runs on the dask scheduler's event loop: end the tasks still waiting for a worker with StepStranded."""
    from distributed.protocol.pickle import dumps

    stimulus_id = f"orch-stranded-{time.time()}"
    recommendations: dict[Any, str] = {}
    failed = []
    for key in keys:
        ts = dask_scheduler.tasks.get(key)
        if ts is None or ts.state not in ("no-worker", "queued"):
            continue  # it found a worker meanwhile, or ended
        recommendations.update(dask_scheduler.transition(key, "erred", exception=dumps(StepStranded(message)),
                                                         cause=key, stimulus_id=stimulus_id))
        failed.append(key)
    dask_scheduler.transitions(recommendations, stimulus_id=stimulus_id)
    return failed


def fail_tasks(client: Client, keys: list[str], message: str) -> list[str]:
    """End the tasks ``keys`` that still wait for a worker with :class:`StepStranded` (``message``);
    the keys so ended (their futures err, and the scheduler retries their steps)."""
    if not keys:
        return []
    try:
        failed: list[str] = client.sync(client._run_on_scheduler, _fail_on_scheduler, keys=keys, message=message,
                                        callback_timeout=VIEW_TIMEOUT_S)
    except (OSError, RuntimeError) as exc:
        log.warning("could not end %d stranded task(s): %s", len(keys), exc)
        return []
    return failed


async def _remove_on_scheduler(dask_scheduler: Any, addresses: list[str]) -> list[str]:
    removed = []
    for address in addresses:
        if address in dask_scheduler.workers:
            await dask_scheduler.remove_worker(address, stimulus_id=f"orch-worker-lost-{time.time()}", close=False)
            removed.append(address)
    return removed


def remove_workers(client: Client, addresses: list[str]) -> list[str]:
    """Drop workers known to be gone from the dask scheduler, so that the tasks they were running
    fail now (``KilledWorker``) instead of when dask stops waiting for their heartbeat."""
    if not addresses:
        return []
    try:
        removed: list[str] = client.sync(client._run_on_scheduler, _remove_on_scheduler, addresses=addresses,
                                         callback_timeout=VIEW_TIMEOUT_S)
    except (OSError, RuntimeError) as exc:
        log.warning("could not drop the lost workers %s: %s", ", ".join(addresses), exc)
        return []
    return removed


class StrandedSince:
    """Since when each stranded task has waited (as this executor saw it: within a look's interval)."""

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def update(self, stranded: Mapping[str, Any], now: float) -> dict[str, float]:
        """The tasks stranded now, with the time each was first seen so (others are forgotten)."""
        self._since = {key: self._since.get(key, now) for key in stranded}
        return dict(self._since)

    def older_than(self, limit_s: float, now: float) -> list[str]:
        return [key for key, since in self._since.items() if now - since >= limit_s]

    def forget(self, keys: list[str]) -> None:
        for key in keys:
            self._since.pop(key, None)


def needs_text(restrictions: Mapping[str, float]) -> str:
    """``cpus=2, gpus=1`` (or ``nothing in particular``) for messages about a stranded task."""
    return ", ".join(f"{name}={value:g}" for name, value in sorted(restrictions.items())) or "any worker"


def fail_stranded_after(client: Client, view: ClusterView, tracker: StrandedSince, limit_s: float, host: str,
                        now: float) -> list[str]:
    """End the tasks that no worker of ``host`` could take for ``limit_s``; their keys."""
    tracker.update(view.stranded, now)
    overdue = tracker.older_than(limit_s, now)
    failed: list[str] = []
    for key in overdue:
        message = (f"host {host!r}: no worker could take the step for {limit_s:.0f} s (it needs "
                   f"{needs_text(view.stranded.get(key, {}))}); [hosts.{host}.liveness] no_worker_limit")
        failed += fail_tasks(client, [key], message)
    if failed:
        log.warning("host %s: %d step(s) waited %.0f s for a worker; failed (they are retried)", host, len(failed),
                    limit_s)
    tracker.forget(overdue)
    return failed


class StrandedTasks:
    """The no-worker limit alone, for a cluster whose workers need no other watch (the local host):
    a task that no worker could take for ``limit_s()`` (asked once, when first needed) is failed."""

    def __init__(self, host: str, limit_s: Callable[[], float]) -> None:
        self.host = host
        self._limit_source = limit_s
        self._limit: float | None = None
        self._tracker = StrandedSince()
        self._last_look = 0.0

    def _limit_s(self) -> float:
        if self._limit is None:
            self._limit = self._limit_source()
        return self._limit

    def check(self, client: Client, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        if now - self._last_look < WATCH_INTERVAL_S:
            return []
        self._last_look = now
        view = cluster_view(client)
        if view is None:
            return []
        return fail_stranded_after(client, view, self._tracker, self._limit_s(), self.host, now)


def local_no_worker_limit(project_dir: Path | None) -> float:
    """The local host's ``[hosts.local.liveness] no_worker_limit`` (the default without a project,
    or when its hosts files cannot be read: the local host's own check reports that)."""
    default = LivenessConfig().no_worker_s
    if project_dir is None:
        return default
    from orchestrator.hosts.config.loader import load_hosts

    try:
        return load_hosts(project_dir).get(LOCAL_HOST).liveness.no_worker_s
    except OrchestratorError:
        return default


class HealthReport:
    """A host's line in the store's health table, written only when what it says changes.

    Written from the scheduler's thread (an executor's ``tick``), read by ``orch status`` and
    ``orch queue``. A host that stays healthy costs one write per scheduler start.
    """

    def __init__(self, store: ProjectStore, host: str) -> None:
        self.store = store
        self.host = host
        current = store.hosts.get(host)
        self.state: HostState | None = current.state if current else None
        self.message: str | None = current.message if current else None

    def unreachable(self, message: str) -> None:
        if self.state is HostState.UNREACHABLE and self.message == message:
            return
        if self.state is not HostState.UNREACHABLE:
            log.warning("host %s is unreachable: %s", self.host, message)
        self._write(HostState.UNREACHABLE, message)

    def ok(self, message: str) -> None:
        """The host answers; ``message`` is written with the change of state only (so that a
        note such as a cancelled pilot, written by :meth:`note`, stays until the next change)."""
        if self.state is HostState.OK:
            return
        if self.state is HostState.UNREACHABLE:
            log.info("host %s answers again: %s", self.host, message)
        self._write(HostState.OK, message)

    def note(self, message: str) -> None:
        """Keep the state, change the message (e.g. a pilot that never connected, before the host
        counts as unreachable)."""
        if self.message != message:
            self._write(self.state or HostState.OK, message)

    def _write(self, state: HostState, message: str) -> None:
        try:
            self.store.hosts.report(self.host, state, message)
        except (OrchestratorError, OperationalError) as exc:  # a busy store: the next change writes it
            log.warning("host %s: its health could not be recorded: %s", self.host, exc)
            return
        self.state, self.message = state, message
