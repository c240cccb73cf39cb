"""The contract of an executor: one per execution host, behind the same few calls.

The scheduler does not care whether a step runs on the workstation's LocalCluster, in a
pilot worker of a SLURM/SGE/PBS cluster, or as a batch job of its own: it asks the run's
host executor to ``check`` a run's steps, to ``submit`` a step (which returns a dask future)
and to ``cancel`` steps. The implementations are :mod:`.local`, :mod:`.queue` and :mod:`.ssh`;
:mod:`orchestrator.scheduler.executors` makes them on first use from the hosts files.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

from distributed import Client, Future

from orchestrator.errors import OrchestratorError
from orchestrator.hosts.config.model import HostConfig
from orchestrator.protocol import Step, StepGraph
from orchestrator.store import StepRecord
from orchestrator.worker.runtime import StepPayload

log = logging.getLogger("orchestrator.scheduler")


class HostUnusable(OrchestratorError):
    """A run's host cannot run it (unknown, misconfigured, or its steps do not fit)."""


class HostExecutor(ABC):
    """Runs steps on one host."""

    name: str
    client: Client

    @abstractmethod
    def check(self, graph: StepGraph) -> None:
        """Raise HostUnusable naming the step when one cannot ever run on this host."""

    @abstractmethod
    def submit(self, payload: StepPayload, step: Step, key: str) -> Future:
        """Hand one attempt of a step to the host; the future ends when the attempt has."""

    def submit_many(self, items: list[tuple[StepPayload, Step, str]]) -> list[Future]:
        """``submit`` for a batch of (payload, step, key), in order."""
        return [self.submit(payload, step, key) for payload, step, key in items]

    def cancel(self, futures: list[Future], steps: Iterable[StepRecord]) -> None:
        """Stop these attempts (their records are already CANCELLED)."""
        for future in futures:
            future.cancel()

    def tick(self) -> None:
        """Called on every scheduler loop: scale pilots, and so on."""
        return None

    def close(self) -> None:
        """Release what the executor holds on the host."""
        return None


ExecutorFactory = Callable[[HostConfig], HostExecutor]
