"""The contract of an executor: one per execution host, behind the same few calls.

The scheduler does not care whether a step runs on the workstation's LocalCluster, in a
pilot worker of a cluster's queue system, or as a batch job of its own: it asks the run's
host executor to ``check`` a run's steps, to ``submit`` a step (which returns a dask future)
and to ``cancel`` steps. The implementations are :mod:`.local`, :mod:`.queue` and :mod:`.ssh`;
:mod:`orchestrator.scheduler.executors` makes them on first use from the hosts files.
"""

from __future__ import annotations

import logging
import queue
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from distributed import Client, Future

from orchestrator.errors import OrchestratorError
from orchestrator.hosts.config.model import HostConfig
from orchestrator.protocol import Step, StepGraph
from orchestrator.store import StepRecord
from orchestrator.worker.remote import PathMap
from orchestrator.worker.runtime import StepPayload

log = logging.getLogger(__name__)


class HostUnusable(OrchestratorError):
    """A run's host cannot run it (unknown, misconfigured, or its steps do not fit)."""


class HostExecutor(ABC):
    """Runs steps on one host.

    Two kinds: the local host's workers record their steps in the store themselves
    (``reports = False``, the futures end with the step's result); every other host's steps
    run away from the store (``reports = True``): their futures end with a
    :class:`~orchestrator.worker.outcome.StepOutcome` that the scheduler records, and the
    executor collects their "it started" announcements for :meth:`started`.
    """

    name: str
    client: Client
    reports: bool = False
    #: the host's configured commands for programs (``[hosts.NAME.programs]``), passed to steps
    programs: dict[str, list[str]] = {}

    @abstractmethod
    def check(self, graph: StepGraph) -> None:
        """Raise HostUnusable naming the step when one cannot ever run on this host."""

    @abstractmethod
    def submit(self, payload: StepPayload, step: Step, key: str) -> Future:
        """Hand one attempt of a step to the host; the future ends when the attempt has."""

    def submit_many(self, items: list[tuple[StepPayload, Step, str]]) -> list[Future]:
        """``submit`` for a batch of (payload, step, key), in order."""
        return [self.submit(payload, step, key) for payload, step, key in items]

    def cancel(self, futures: list[Future], steps: Iterable[StepRecord], store_url: str) -> None:
        """Stop these attempts, their processes and jobs (their records are already CANCELLED);
        ``store_url`` names the project, whose step tokens mark the processes."""
        for future in futures:
            future.cancel()

    def started(self) -> list[tuple[int, int, dict[str, Any]]]:
        """(step id, attempt, start fields) of the steps that announced their start since the last call."""
        return []

    def tick(self) -> None:
        """Called on every scheduler loop: scale pilots, and so on."""
        return None

    def close(self) -> None:
        """Release what the executor holds on the host."""
        return None


ExecutorFactory = Callable[[HostConfig], HostExecutor]


def host_path_map(host: HostConfig, project_dir: Path) -> PathMap:
    """How the host sees this machine's paths (its ``path_map``; the same paths without one)."""
    return PathMap.from_pairs(host.path_map, str(project_dir))


def drain_announcements(announced: queue.Queue[dict[str, Any]]) -> list[tuple[int, int, dict[str, Any]]]:
    """(step id, attempt, start fields) of the "it started" events a host's workers sent."""
    found: list[tuple[int, int, dict[str, Any]]] = []
    while True:
        try:
            msg = announced.get_nowait()
        except queue.Empty:
            return found
        fields: dict[str, Any] = {k: msg[k] for k in ("worker", "pid", "proc_start", "host", "gpus", "job_id")
                                  if k in msg}
        fields["started_at"] = datetime.fromisoformat(msg["started_at"])
        found.append((int(msg["step_id"]), int(msg["attempt"]), fields))
