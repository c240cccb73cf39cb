"""One poller per host: a batched status query per interval for every job it watches.

What lives here once, for every queue system:

- **Batching**: one status command per poll for all watched jobs (``squeue --jobs=a,b,c``,
  ``qstat -xml``), never one per job. ``stats.status_queries`` counts them.
- **Adaptive interval**: ``fast_s`` while a job is pending, starting or ending (and after any
  change), then growing by ``growth`` per quiet poll up to ``max_s`` while jobs just run;
  after a failed query, a backoff from ``fast_s`` doubling up to ``max_s``.
- **Transient failures**: a status command that fails or times out (controller restarting)
  changes nothing: no job is marked failed because the queue did not answer.
  ``stats.failing_since`` says since when the queue has not answered (None while it does):
  the scheduler reports the host unreachable once that lasts past its grace period
  (``[hosts.X.liveness] unreachable_after``).
- **Reconciliation**: a job that ended (the queue says so, or it left the listing) is settled
  from the queue's accounting (``sacct``, ``qacct``, ``qstat -x``), with the exit code from the
  ``exit_code`` sentinel its script writes. A job that left the queue is never assumed done:
  without an accounting record or a sentinel it stays open, and after ``lost_after_s``
  (``[hosts.X.liveness] lost_job_after``) it is settled FAILED as lost, at the first poll after
  that (polls are ``fast_s`` apart while a job is gone). A job whose cancel we asked for ends
  CANCELLED unless it had finished.
- **Pilot jobs** may be watched too (``watch(job_id, pilot=True)``), so that the executor
  knows when the queue runs them; they share the one status query, and :meth:`snapshot`
  leaves them out unless asked (they are not the host's batch jobs).

``wait(job_id)`` blocks until a job is settled; listeners hear of every change (the batch
module uses one to wake dask tasks in other processes).
"""

from __future__ import annotations

import logging
import posixpath
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from orchestrator.hosts.errors import AccountingUnavailable, HostError, QueueCommandError
from orchestrator.hosts.queues.base import JobAccounting, JobState, JobStatus, QueueBackend
from orchestrator.hosts.runner import CommandRunner

log = logging.getLogger(__name__)
SENTINEL_NAME = "exit_code"


@dataclass(frozen=True)
class PollSettings:
    fast_s: float = 1.0
    max_s: float = 30.0
    growth: float = 1.5
    command_timeout_s: float = 20.0
    #: how long an ended job waits for its accounting record before it is settled without one
    accounting_grace_s: float = 15.0
    #: a job gone from the queue with neither accounting nor sentinel is failed after this
    lost_after_s: float = 120.0
    #: after the queue said it keeps no accounting, ask again after this
    accounting_retry_s: float = 600.0


@dataclass
class PollerStats:
    status_queries: int = 0
    status_failures: int = 0
    accounting_queries: int = 0
    last_error: str | None = None
    last_poll_s: float | None = None
    #: when the current run of failed status queries began (the poller's clock); None: it answers
    failing_since: float | None = None
    #: when a status query last answered (the poller's clock)
    last_answer_s: float | None = None


@dataclass
class _Watched:
    job_id: str
    key: str
    job_dir: str | None
    watched_at: float
    status: JobStatus
    cancel_requested: bool = False
    gone_since: float | None = None
    ended_since: float | None = None
    final: bool = False
    pilot: bool = False


Listener = Callable[[JobStatus], None]


@dataclass
class _Ending:
    watched: _Watched
    queue_status: JobStatus | None  # None: no longer listed
    sentinel: int | None = None
    accounting: JobAccounting | None = None


class QueuePoller:
    """Batched, adaptive status polling of one host's batch jobs (see the module docstring)."""

    def __init__(self, backend: QueueBackend, runner: CommandRunner, *, settings: PollSettings | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.runner = runner
        self.settings = settings or PollSettings()
        self.clock = clock
        self.stats = PollerStats()
        self._jobs: dict[str, _Watched] = {}
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Listener] = []
        self._interval = self.settings.fast_s
        self._failures = 0
        self._accounting_retry_at: float | None = None
        self._has_accounting = bool(backend.accounting_commands(["0"]))

    # -- what the scheduler calls --

    def watch(self, job_id: str, job_dir: str | None = None, *, pilot: bool = False) -> None:
        """Start following ``job_id``; ``job_dir`` is where its script writes ``exit_code``;
        ``pilot``: a pilot job (left out of :meth:`snapshot` unless asked for)."""
        now = self.clock()
        with self._cond:
            self._jobs[job_id] = _Watched(job_id, self.backend.match_key(job_id), job_dir, now,
                                          JobStatus(job_id, JobState.PENDING, reason="submitted"), pilot=pilot)
            self._interval = self.settings.fast_s
            self._cond.notify_all()
        self._wake.set()

    def forget(self, job_id: str) -> None:
        with self._cond:
            self._jobs.pop(job_id, None)

    def status(self, job_id: str) -> JobStatus | None:
        with self._cond:
            watched = self._jobs.get(job_id)
            return watched.status if watched else None

    def snapshot(self, *, pilots: bool = False) -> dict[str, JobStatus]:
        """The status of every watched batch job (of the pilot jobs instead, with ``pilots``)."""
        with self._cond:
            return {job_id: w.status for job_id, w in self._jobs.items() if w.pilot == pilots}

    def add_listener(self, listener: Listener) -> None:
        """``listener(status)`` is called (from the polling thread) on every change."""
        self._listeners.append(listener)

    def wait(self, job_id: str, timeout_s: float | None = None) -> JobStatus:
        """Block until ``job_id`` is settled (or ``timeout_s`` passed: then its current status)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while True:
                watched = self._jobs.get(job_id)
                if watched is None:
                    raise HostError(f"job {job_id} is not watched by the poller of host {self.backend.host.name!r}")
                if watched.final:
                    return watched.status
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return watched.status
                self._cond.wait(remaining)

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Ask the queue to end ``job_ids`` (one command); they settle as CANCELLED."""
        if not job_ids:
            return
        with self._cond:
            for job_id in job_ids:
                if job_id in self._jobs:
                    self._jobs[job_id].cancel_requested = True
            self._interval = self.settings.fast_s
        result = self.runner.run(self.backend.cancel_command(job_ids), timeout_s=self.settings.command_timeout_s)
        if not self.backend.cancel_succeeded(result):
            raise QueueCommandError(f"cancel failed on host {self.backend.host.name!r}: {result.describe()}")
        self._wake.set()

    # -- background thread --

    def start(self) -> QueuePoller:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"poller-{self.backend.host.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.command_timeout_s + 5)
            self._thread = None

    def __enter__(self) -> QueuePoller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _has_open_jobs(self) -> bool:
        return any(not w.final for w in self._jobs.values())

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._stop.is_set() and not self._has_open_jobs():
                    self._cond.wait()
            deadline = time.monotonic() + self.next_interval()
            while not self._stop.is_set() and (remaining := deadline - time.monotonic()) > 0:
                if self._wake.wait(remaining):
                    self._wake.clear()
                    deadline = min(deadline, time.monotonic() + self.settings.fast_s)
            if self._stop.is_set():
                break
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - a bug must not stop polling for every job of the host
                log.exception("polling host %s failed unexpectedly", self.backend.host.name)

    # -- one poll --

    def next_interval(self) -> float:
        """Seconds until the next poll."""
        s = self.settings
        if self._failures:
            return min(s.max_s, s.fast_s * 2 ** (self._failures - 1))
        return self._interval

    def poll_once(self) -> list[JobStatus]:
        """One batched status query (plus accounting for jobs that ended); the changes."""
        with self._cond:
            open_jobs = [w for w in self._jobs.values() if not w.final]
        if not open_jobs:
            return []
        self.stats.status_queries += 1
        self.stats.last_poll_s = self.clock()
        try:
            command = self.backend.status_command([w.job_id for w in open_jobs])
            result = self.runner.run(command, timeout_s=self.settings.command_timeout_s)
            listing = self.backend.read_status(result)
        except QueueCommandError as exc:
            self._failures += 1
            self.stats.status_failures += 1
            self.stats.last_error = str(exc)
            if self.stats.failing_since is None:
                self.stats.failing_since = self.stats.last_poll_s
            log.warning("status query on host %s failed (%s); nothing changes until it answers",
                        self.backend.host.name, exc)
            return []
        recovered = self._failures > 0
        self._failures = 0
        now = self.clock()
        self.stats.failing_since = None
        self.stats.last_answer_s = now
        by_key = {self.backend.match_key(job_id): status for job_id, status in listing.items()}
        changes: list[JobStatus] = []
        endings: list[_Ending] = []
        with self._cond:
            for watched in open_jobs:
                listed = by_key.get(watched.key)
                if listed is not None:
                    watched.gone_since = None
                    listed = replace(listed, job_id=watched.job_id)
                    if listed.state.is_final:
                        endings.append(_Ending(watched, listed))
                    elif self._update(watched, listed):
                        changes.append(listed)
                else:
                    if watched.gone_since is None:
                        watched.gone_since = now
                    endings.append(_Ending(watched, None))
        if endings:
            changes += self._settle(endings, now)
        self._adapt(open_jobs, bool(changes) or recovered)
        self._notify(changes)
        return changes

    def _update(self, watched: _Watched, status: JobStatus, final: bool = False) -> bool:
        changed = (status.state, status.reason, status.nodes, status.native_state) != (
            watched.status.state, watched.status.reason, watched.status.nodes, watched.status.native_state)
        watched.status = status
        watched.final = final
        return changed or final

    def _adapt(self, open_jobs: Iterable[_Watched], changed: bool) -> None:
        s = self.settings
        busy = any(w.status.state in (JobState.PENDING, JobState.UNKNOWN) or w.ended_since is not None
                   or w.gone_since is not None for w in open_jobs if not w.final)
        if busy or changed:  # after a change or an outage, look again soon
            self._interval = s.fast_s
        else:
            self._interval = min(s.max_s, max(s.fast_s, self._interval) * s.growth)

    def _notify(self, changes: list[JobStatus]) -> None:
        if not changes:
            return
        with self._cond:
            self._cond.notify_all()
        for status in changes:
            for listener in self._listeners:
                try:
                    listener(status)
                except Exception:  # noqa: BLE001 - one broken listener must not stop the others
                    log.exception("listener of host %s failed on job %s", self.backend.host.name, status.job_id)

    # -- reconciliation --

    def _accounting_usable(self, now: float) -> bool:
        return self._has_accounting and (self._accounting_retry_at is None or now >= self._accounting_retry_at)

    def _read_accounting(self, endings: list[_Ending], now: float) -> None:
        if not self._accounting_usable(now):
            return
        self._accounting_retry_at = None
        records: dict[str, JobAccounting] = {}
        for command in self.backend.accounting_commands([e.watched.job_id for e in endings]):
            self.stats.accounting_queries += 1
            try:
                result = self.runner.run(command, timeout_s=self.settings.command_timeout_s)
                records.update(self.backend.read_accounting(result))
            except AccountingUnavailable as exc:
                log.info("%s", exc)
                self._accounting_retry_at = now + self.settings.accounting_retry_s
                return
            except QueueCommandError as exc:
                log.warning("accounting query on host %s failed: %s", self.backend.host.name, exc)
                return
        by_key = {self.backend.match_key(job_id): record for job_id, record in records.items()}
        for ending in endings:
            ending.accounting = by_key.get(ending.watched.key)

    def _read_sentinel(self, watched: _Watched) -> int | None:
        if not watched.job_dir:
            return None
        try:
            text = self.runner.read_text(posixpath.join(watched.job_dir, SENTINEL_NAME))
        except QueueCommandError:
            return None
        try:
            return int(text.strip()) if text else None
        except ValueError:
            return None

    def _settle(self, endings: list[_Ending], now: float) -> list[JobStatus]:
        for ending in endings:
            ending.sentinel = self._read_sentinel(ending.watched)
            if ending.watched.ended_since is None:
                ending.watched.ended_since = now
        self._read_accounting(endings, now)
        changes = []
        with self._cond:
            for ending in endings:
                status, final = self._decide(ending, now)
                if self._update(ending.watched, status, final):
                    changes.append(status)
        return changes

    def _decide(self, ending: _Ending, now: float) -> tuple[JobStatus, bool]:
        """The job's status now, and whether it is settled."""
        w, listed, acct, code = ending.watched, ending.queue_status, ending.accounting, ending.sentinel
        base = listed or w.status
        waited = now - (w.ended_since or now)
        awaiting_accounting = self._accounting_usable(now) and waited < self.settings.accounting_grace_s
        if acct is not None and acct.state.is_final:
            exit_code = code if code is not None else acct.exit_code
            status = replace(base, state=acct.state, native_state=acct.native_state, exit_code=exit_code,
                             elapsed_s=acct.elapsed_s or base.elapsed_s, nodes=acct.nodes or base.nodes,
                             reason=acct.detail, source="accounting", accounting=acct)
        elif awaiting_accounting and (listed is not None or code is not None):
            # Keep the last open state: a settled-looking status must mean settled.
            ended = f"ended ({listed.native_state})" if listed is not None else f"ended (exit code {code})"
            return replace(w.status, reason=f"{ended}; waiting for the accounting record"), False
        elif listed is not None:
            status = replace(listed, exit_code=code, source="queue")
        elif code is not None:
            state = JobState.DONE if code == 0 else JobState.FAILED
            status = replace(base, state=state, exit_code=code, source="sentinel",
                             reason=None if code == 0 else f"exit code {code}")
        elif w.cancel_requested and (w.status.state is JobState.PENDING or not awaiting_accounting):
            # We deleted it: a job deleted before it ran leaves no accounting record at all.
            status = replace(base, state=JobState.CANCELLED, source="cancel", reason="cancelled")
        elif w.gone_since is not None and now - w.gone_since >= self.settings.lost_after_s:
            status = replace(base, state=JobState.FAILED, source="lost",
                             reason=f"left the queue {now - w.gone_since:.0f} s ago with neither an accounting "
                                    "record nor an exit_code sentinel")
        else:
            return replace(base, reason="left the queue; waiting for accounting or the exit_code sentinel"), False
        if w.cancel_requested and status.state is not JobState.DONE:
            status = replace(status, state=JobState.CANCELLED, reason=status.reason or "cancelled")
        return status, True
