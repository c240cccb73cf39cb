"""An SSH host's dask workers, watched: lost workers are dropped and started again, a host that
stays lost is reported unreachable and its waiting steps fail with the reason.

What is watched, at every look (:data:`~.watch.WATCH_INTERVAL_S`, from the executor's ``tick``):

- the group's SSH connection and each worker's SSH channel (a worker process that ends closes its
  channel; a dropped connection ends them all);
- the workers' presence in the executor's dask scheduler, and how long since each was last heard
  (``[hosts.X.liveness] worker_silence``: a connection that died without a word).

When the group is found lost:

1. its workers are removed from the dask scheduler, so the steps they were running fail at once
   (``KilledWorker``: the scheduler records "worker lost" and queues the retry at once);
2. the group is closed and started again in a thread, with a backoff between tries
   (:data:`RESTART_FIRST_DELAY_S`, doubling up to :data:`RESTART_MAX_DELAY_S`): each try is a new
   SSH connection, a new probe, new workers (with new names);
3. steps that wait for a worker meanwhile (the retries among them) wait: a step that needs
   staging waits before it sends anything (:meth:`SSHWorkerWatch.wait_usable`), the others in
   dask's ``no-worker`` state;
4. when the workers are not back after ``[hosts.X.liveness] unreachable_after``, the host is
   reported unreachable (the store's host health, shown by ``orch status``) and the steps waiting
   for it fail with that reason (:class:`~.watch.StepStranded`), at once, as do those that come
   while it stays so. The tries go on; the host is ok again when one succeeds.

While the workers run, a step that no worker can take fails after ``no_worker_limit``.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import paramiko
from distributed import Client

from orchestrator.errors import OrchestratorError
from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.ssh.workers import SSHWorkerError, SSHWorkerGroup
from orchestrator.scheduler.executors.watch import (
    WATCH_INTERVAL_S,
    ClusterView,
    HealthReport,
    StepStranded,
    StrandedSince,
    cluster_view,
    fail_stranded_after,
    fail_tasks,
    remove_workers,
)

log = logging.getLogger(__name__)

RESTART_FIRST_DELAY_S = 1.0
RESTART_MAX_DELAY_S = 30.0
#: what a failed start of the workers raises (the reason is kept for the host's health message)
_START_ERRORS = (OrchestratorError, OSError, EOFError, paramiko.SSHException)


class GroupState(enum.Enum):
    UP = "up"
    RESTARTING = "restarting"
    CLOSED = "closed"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _gist(text: str) -> str:
    """An error on one line: its first line and, when there are more, its last (often stderr's end)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return f"{lines[0]} ... {lines[-1]}"


class SSHWorkerWatch:
    """Keeps one SSH host's group of dask workers (see the module docstring).

    ``start(name_prefix)`` starts a group and returns it once its workers joined the scheduler
    (closing it and raising otherwise); it is called here once, at once (its error is the
    executor's), then again after each loss.
    """

    def __init__(self, host: HostConfig, client: Client, start: Callable[[str], SSHWorkerGroup], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.client = client
        self.liveness = host.liveness
        self._start = start
        self._clock = clock
        self._cond = threading.Condition()
        self._generation = 0
        self.group: SSHWorkerGroup | None = start(self._name_prefix())
        self._state = GroupState.UP
        self._lost_at: float | None = None
        self._lost_wall: datetime | None = None
        self._lost_why = ""
        self._restart_error = ""
        self._thread: threading.Thread | None = None
        self._tracker = StrandedSince()
        self._was_lost = False
        self._last_look = 0.0
        #: how many times the group was lost (for tests and logs)
        self.losses = 0

    def _name_prefix(self) -> str:
        base = f"{self.host.name}-ssh"
        return base if self._generation == 0 else f"{base}-r{self._generation}"

    @property
    def state(self) -> GroupState:
        with self._cond:
            return self._state

    # ------------------------------------------------------------------ the look, from the scheduler's loop
    def look(self, health: HealthReport) -> None:
        """Check the workers, fail the steps that may wait no longer, report the host's health."""
        now = self._clock()
        if now - self._last_look < WATCH_INTERVAL_S:
            return
        self._last_look = now
        view = cluster_view(self.client)
        if view is None:
            return
        with self._cond:
            state, group = self._state, self.group
        if state is GroupState.UP and group is not None:
            why = self._loss(group, view)
            if why:
                self._lost(group, view, why, now)
                state = GroupState.RESTARTING
        if state is GroupState.CLOSED:
            return
        if state is GroupState.UP and group is not None:
            if self._was_lost:  # back: what waited during the restart starts its count again
                self._was_lost, self._tracker = False, StrandedSince()
            health.ok(f"{len(group.workers)} SSH worker(s) running")
            fail_stranded_after(self.client, view, self._tracker, self.liveness.no_worker_s, self.host.name, now)
            return
        self._was_lost = True
        self._tracker.update(view.stranded, now)
        if self._unreachable_now(now):
            message = self.unreachable_message()
            health.unreachable(message)
            with self._cond:
                self._cond.notify_all()  # staging tasks that wait give up
            failed = fail_tasks(self.client, list(view.stranded), f"host {self.host.name!r} is unreachable: {message}")
            self._tracker.forget(failed)

    def _loss(self, group: SSHWorkerGroup, view: ClusterView) -> str:
        """Why the group is lost ("" while it is not)."""
        try:
            group.check()
        except SSHWorkerError as exc:
            return str(exc)
        missing = [w.name for w in group.workers if w.address not in view.workers]
        if missing:
            return f"host {self.host.name!r}: dask worker(s) {', '.join(missing)} left the scheduler"
        silence = self.liveness.worker_silence_s
        silent = [(w.name, view.workers[w.address].silent_s) for w in group.workers
                  if view.workers[w.address].silent_s >= silence]
        if silent:
            names = ", ".join(f"{name} ({seconds:.0f} s)" for name, seconds in silent)
            return f"host {self.host.name!r}: dask worker(s) not heard from: {names}"
        return ""

    def _lost(self, group: SSHWorkerGroup, view: ClusterView, why: str, now: float) -> None:
        log.warning("%s; the steps they ran fail and are retried; the workers are started again", _first_line(why))
        with self._cond:
            if self._state is not GroupState.UP:
                return
            self._state = GroupState.RESTARTING
            self._lost_at, self._lost_wall, self._lost_why, self._restart_error = now, datetime.now(UTC), why, ""
            self.losses += 1
            self._thread = threading.Thread(target=self._restart, args=(group,), daemon=True,
                                            name=f"ssh-restart-{self.host.name}")
        remove_workers(self.client, [address for address in group.worker_addresses if address in view.workers])
        self._thread.start()

    def _unreachable_now(self, now: float) -> bool:
        return (self._state is GroupState.RESTARTING and self._lost_at is not None
                and now - self._lost_at >= self.liveness.unreachable_after_s)

    def unreachable_message(self) -> str:
        """Why the host counts as unreachable: when and how its workers were lost, the last try's error."""
        with self._cond:
            lost_wall, why, error = self._lost_wall, self._lost_why, self._restart_error
        when = lost_wall.strftime("%Y-%m-%d %H:%M:%S UTC") if lost_wall else "?"
        text = (f"its SSH workers were lost at {when} ({_first_line(why)}) and could not be started again within "
                f"{self.liveness.unreachable_after_s:.0f} s ([hosts.{self.host.name}.liveness] unreachable_after)")
        return text + (f"; last try: {_gist(error)}" if error else "")

    # ------------------------------------------------------------------ starting again, in a thread
    def _restart(self, old: SSHWorkerGroup) -> None:
        try:
            old.close(timeout=5.0)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            log.info("host %s: closing the lost workers: %s", self.host.name, exc)
        delay = RESTART_FIRST_DELAY_S
        while True:
            with self._cond:
                if self._state is GroupState.CLOSED:
                    return
                self._generation += 1
                prefix = self._name_prefix()
            try:
                group = self._start(prefix)
            except _START_ERRORS as exc:
                log.info("host %s: its workers did not start again (next try in %.0f s): %s", self.host.name, delay,
                         _first_line(str(exc)))
                if not self._pause(delay, str(exc)):
                    return
                delay = min(delay * 2, RESTART_MAX_DELAY_S)
                continue
            with self._cond:
                closed = self._state is GroupState.CLOSED
                if not closed:
                    self.group, self._state, self._lost_at = group, GroupState.UP, None
                    self._cond.notify_all()
            if closed:
                group.close()
                return
            log.info("host %s: %d SSH worker(s) started again (%s)", self.host.name, len(group.workers),
                     ", ".join(group.worker_addresses))
            return

    def _pause(self, delay: float, error: str) -> bool:
        """Wait ``delay`` before the next try; False when the watch closed meanwhile."""
        deadline = self._clock() + delay
        with self._cond:
            self._restart_error = error
            while self._state is not GroupState.CLOSED and (left := deadline - self._clock()) > 0:
                self._cond.wait(left)
            return self._state is not GroupState.CLOSED

    # ------------------------------------------------------------------ for the steps' staging tasks
    def wait_usable(self) -> None:
        """Return while the workers run; wait while they are being started again; raise
        :class:`StepStranded` once the host counts as unreachable (or the executor closed)."""
        with self._cond:
            while True:
                if self._state is GroupState.UP:
                    return
                if self._state is GroupState.CLOSED:
                    raise StepStranded(f"host {self.host.name!r}: its executor closed")
                if self._unreachable_now(self._clock()):
                    break
                self._cond.wait(WATCH_INTERVAL_S)
        raise StepStranded(f"host {self.host.name!r} is unreachable: {self.unreachable_message()}")

    def close(self) -> None:
        with self._cond:
            self._state = GroupState.CLOSED
            group, self.group = self.group, None
            self._cond.notify_all()
        if group is not None:
            group.close()
