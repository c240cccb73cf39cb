"""A queue host, watched: its queue commands, its pilots' connections, its stranded pilot steps.

Looked at on every scheduler loop (at most every :data:`~.watch.WATCH_INTERVAL_S`) from the queue
executor's ``tick``:

- **Queue commands**: while the host's poller gets no answer to its status queries (the
  controller is down, the login node unreachable) nothing fails; once that has lasted
  ``[hosts.X.liveness] unreachable_after``, the host is reported unreachable (the store's host
  health: ``orch status``, ``orch queue``), and ok again at the first answer.
- **Pilots** (:class:`PilotWatch`): every pilot job dask-jobqueue submits is watched on the host's
  poller (the same one status query). A pilot the queue runs whose dask worker has not connected
  after ``[hosts.X.pilot] connect_timeout``, or that ended before its worker connected, is
  cancelled (``scancel``/``qdel``; dask-jobqueue starts another while pilot steps wait) and
  reported, with the first error lines of its log; after ``connect_failures`` such pilots in a
  row, the host is reported unreachable, its waiting pilot steps fail with the reason, and no
  pilot is started for :data:`PILOTS_RETRY_AFTER_S`; then pilots are tried again.
- **Stranded pilot steps**: a pilot step waits for a pilot as long as one is queued or running
  for it (the queue decides when it starts); with none, it fails after ``no_worker_limit``.

A pilot killed by the queue needs nothing from here: its worker's connection closes, dask
fails the step it ran (``allowed-failures = 0``: the scheduler retries it) and dask-jobqueue
replaces the pilot at the next scale.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from distributed import Client

from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.queues.base import JobState
from orchestrator.hosts.queues.pilot_logs import first_error_lines
from orchestrator.hosts.queues.poller import QueuePoller
from orchestrator.scheduler.executors.watch import (
    WATCH_INTERVAL_S,
    ClusterView,
    HealthReport,
    StrandedSince,
    cluster_view,
    fail_stranded_after,
    fail_tasks,
)

log = logging.getLogger(__name__)

#: after ``connect_failures`` pilots in a row never connected, no pilot is started for this long
PILOTS_RETRY_AFTER_S = 600.0
#: a pilot that ended before its worker connected counts as a failure only if dask-jobqueue
#: still holds it this much later (its own scale-down cancels pilots too, and drops them)
_ENDED_SETTLE_S = 2.0


@dataclass
class _Pilot:
    name: str
    job_id: str
    running_since: float | None = None
    ended_since: float | None = None
    connected: bool = False


def _when(clock_time: float, clock: Callable[[], float]) -> str:
    """A time of ``clock`` as the wall-clock time it was."""
    moment = datetime.now(UTC) - timedelta(seconds=max(0.0, clock() - clock_time))
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class PilotWatch:
    """The pilots of one queue host: connected within the limit, or cancelled and reported."""

    def __init__(self, host: HostConfig, cluster: Any, client: Client, poller: QueuePoller, log_dir: Path,
                 python: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.cluster = cluster
        self.client = client
        self.poller = poller
        self.log_dir = log_dir
        self.python = python
        self._clock = clock
        self._pilots: dict[str, _Pilot] = {}  # by job id
        #: pilots in a row that never connected
        self.failures = 0
        #: the last such pilot's report (kept in the host's health)
        self.last_failure: str | None = None
        self._broken_until: float | None = None
        self._broken_message = ""

    def broken(self, now: float | None = None) -> bool:
        """True while no pilot may start (too many in a row never connected)."""
        now = self._clock() if now is None else now
        if self._broken_until is not None and now >= self._broken_until:
            log.info("host %s: trying pilots again", self.host.name)
            self._broken_until = None
            self.failures = self.host.pilot.connect_failures - 1  # one more failure stops them again
        return self._broken_until is not None

    @property
    def broken_message(self) -> str:
        return self._broken_message

    def alive(self) -> bool:
        """Whether a pilot job is queued or running (dask-jobqueue holds one that has not ended)."""
        return any(p.ended_since is None for p in self._pilots.values())

    def look(self, view: ClusterView, now: float) -> list[str]:
        """Follow every pilot; cancel those that will not connect. The reports of this look's failures."""
        jobs = self._jobs()
        names = view.worker_names
        for name, job_id in jobs.items():
            if job_id not in self._pilots:
                self._pilots[job_id] = _Pilot(name, job_id)
                self.poller.watch(job_id, pilot=True)
        reports = []
        for job_id, pilot in list(self._pilots.items()):
            if jobs.get(pilot.name) != job_id:  # dask-jobqueue let it go (scaled down, replaced)
                self._forget(job_id)
                continue
            if not pilot.connected and (pilot.name in names
                                        or any(n.startswith(pilot.name + "-") for n in names)):
                pilot.connected = True
                self.failures = 0
            status = self.poller.status(job_id)
            if status is None:
                continue
            if status.is_final and pilot.ended_since is None:
                pilot.ended_since = now
            if pilot.connected:
                continue
            if status.state is JobState.RUNNING and pilot.running_since is None:
                pilot.running_since = now
            if pilot.ended_since is not None and now - pilot.ended_since >= _ENDED_SETTLE_S:
                why = f"ended ({status.native_state or status.state.value}" + \
                      (f", exit code {status.exit_code}" if status.exit_code is not None else "") + \
                      ") before its dask worker connected"
                reports.append(self._failed(pilot, why, ended=True))
            elif pilot.running_since is not None and now - pilot.running_since >= self.host.pilot.connect_timeout_s:
                reports.append(self._failed(pilot, f"has run for {now - pilot.running_since:.0f} s and its dask "
                                                   f"worker has not connected ([hosts.{self.host.name}.pilot] "
                                                   f"connect_timeout = {self.host.pilot.connect_timeout_s:.0f} s)",
                                            ended=False))
        return reports

    def _jobs(self) -> dict[str, str]:
        """dask-jobqueue's pilot jobs now: name -> job id (those submitted)."""
        held = dict(self.cluster.workers)  # a copy: dask-jobqueue changes it on its event loop
        return {str(name): str(job.job_id) for name, job in held.items() if getattr(job, "job_id", None)}

    def _failed(self, pilot: _Pilot, why: str, *, ended: bool) -> str:
        lines, files = first_error_lines(self.log_dir, pilot.job_id)
        where = ", ".join(str(path) for path in files) or f"no log of it in {self.log_dir}"
        said = "; ".join(lines) if lines else "(nothing in it)"
        fate = "" if ended else "; it was cancelled"
        message = (f"pilot job {pilot.job_id} of host {self.host.name!r} {why}{fate}. The compute "
                   f"nodes may not reach the scheduler at {self.cluster.scheduler_address} (see [hosts."
                   f"{self.host.name}.pilot] interface), its python ({self.python}) may not start a dask worker, "
                   f"or the host's env_setup may fail. Its log ({where}): {said}")
        log.warning("%s", message)
        self._drop(pilot)
        self.failures += 1
        self.last_failure = message
        if self.failures >= self.host.pilot.connect_failures:
            self._broken_until = self._clock() + PILOTS_RETRY_AFTER_S
            self._broken_message = (f"{self.failures} pilot job(s) in a row never connected ([hosts.{self.host.name}"
                                    f".pilot] connect_failures = {self.host.pilot.connect_failures}); no pilot is "
                                    f"started for {PILOTS_RETRY_AFTER_S:.0f} s. Last: {message}")
        return message

    def _drop(self, pilot: _Pilot) -> None:
        """Cancel the pilot's job and take it from dask-jobqueue (which then starts another while
        the host's pilots are scaled up), on the cluster's event loop."""
        self._forget(pilot.job_id)

        async def drop() -> None:
            job = self.cluster.workers.pop(pilot.name, None)
            if job is not None:
                await job.close()  # the queue's cancel command

        self.cluster.loop.add_callback(drop)

    def _forget(self, job_id: str) -> None:
        self._pilots.pop(job_id, None)
        self.poller.forget(job_id)


class QueueHostWatch:
    """The liveness of one queue host (see the module docstring); the executor calls :meth:`look`."""

    def __init__(self, host: HostConfig, poller: QueuePoller, health: HealthReport, *,
                 pilots: PilotWatch | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.poller = poller
        self.health = health
        self.pilots = pilots
        self._clock = clock
        self._tracker = StrandedSince()
        self._last_look = 0.0
        self._failing: float | None = None
        self._failing_wall = ""

    def pilots_broken(self) -> bool:
        return self.pilots is not None and self.pilots.broken()

    def look(self) -> None:
        now = self._clock()
        if now - self._last_look < WATCH_INTERVAL_S:
            return
        self._last_look = now
        if self.pilots is not None:
            self._look_at_pilots(now)
        self._report(now)

    def _look_at_pilots(self, now: float) -> None:
        assert self.pilots is not None
        view = cluster_view(self.pilots.client)
        if view is None:
            return
        for report in self.pilots.look(view, now):
            if not self.pilots.broken(now):
                self.health.note(report)
        if self.pilots.broken(now):
            stranded = list(view.stranded)
            failed = fail_tasks(self.pilots.client, stranded,
                                f"host {self.host.name!r}: its pilots never connect: {self.pilots.broken_message}")
            self._tracker.forget(failed)
        elif not self.pilots.alive():
            fail_stranded_after(self.pilots.client, view, self._tracker, self.host.liveness.no_worker_s,
                                self.host.name, now)
        else:
            self._tracker.update({}, now)  # pilots are on their way: nothing waits too long yet

    def _report(self, now: float) -> None:
        stats = self.poller.stats
        grace = self.host.liveness.unreachable_after_s
        if stats.failing_since is not None and now - stats.failing_since >= grace:
            first = (stats.last_error or "no answer").strip().splitlines()[0]
            if self._failing != stats.failing_since:  # the wall-clock time, once per outage (a stable message)
                self._failing, self._failing_wall = stats.failing_since, _when(stats.failing_since, self._clock)
            since = self._failing_wall
            self.health.unreachable(f"its queue's status command has failed since {since} "
                                    f"([hosts.{self.host.name}.liveness] unreachable_after = {grace:.0f} s): {first}")
        elif self.pilots_broken():
            assert self.pilots is not None
            self.health.unreachable(self.pilots.broken_message)
        elif stats.failing_since is None and stats.last_answer_s is not None:
            self.health.ok("its queue answers")
