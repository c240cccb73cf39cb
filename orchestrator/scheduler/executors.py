"""Where steps run: one executor per execution host, behind the same three calls.

The scheduler does not care whether a step runs on the workstation's LocalCluster, in a
pilot worker of a SLURM/SGE/PBS cluster, or as a batch job of its own: it asks the run's
host executor to ``check`` a run's steps, to ``submit`` a step (which returns a dask future)
and to ``cancel`` steps. Executors are made on first use from the project's hosts files and
closed (pilots cancelled, pollers stopped) when the scheduler stops.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from distributed import Client, Future

from orchestrator.errors import OrchestratorError
from orchestrator.hosts.config import HostConfig, HostKind
from orchestrator.hosts.loader import load_hosts
from orchestrator.protocol import Step, StepGraph
from orchestrator.scheduler.gpu_task import run_gpu_step_task
from orchestrator.scheduler.worker_task import StepPayload, run_step_task
from orchestrator.store import ProjectStore, StepRecord

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


class LocalExecutor(HostExecutor):
    """The embedded default: a LocalCluster of one-thread workers on this machine.

    Given ``start`` instead of a client, the cluster starts on the first step submitted: a
    scheduler that only serves runs on other hosts then starts no local workers at all.
    """

    def __init__(self, client: Client | None, name: str = "local", worker_cpus: int = 1, worker_gpus: int = 0,
                 gpu_sharing: bool = False, start: Callable[[], tuple[Any, Client]] | None = None) -> None:
        if client is None and start is None:
            raise ValueError("LocalExecutor needs a client or a way to start its cluster")
        self.name = name
        self._client = client
        self._start = start
        self._cluster: Any = None
        self.worker_cpus = worker_cpus
        self.worker_gpus = worker_gpus
        self.gpu_sharing = gpu_sharing

    @property
    def client(self) -> Client:  # type: ignore[override]
        if self._client is None:
            assert self._start is not None
            log.info("starting the local cluster")
            self._cluster, self._client = self._start()
        return self._client

    @property
    def started(self) -> bool:
        return self._client is not None

    def close(self) -> None:
        """Close the cluster if this executor started it (a client passed in is the caller's)."""
        if self._cluster is not None and self._client is not None:
            self._client.close()
            self._cluster.close()
            self._client = self._cluster = None

    def check(self, graph: StepGraph) -> None:
        for step in graph:
            if step.resources.gpus > self.worker_gpus:
                raise HostUnusable(f"step '{step.name}' needs {step.resources.gpus} GPU(s); host {self.name} "
                                   f"offers {self.worker_gpus} per worker")

    def submit(self, payload: StepPayload, step: Step, key: str) -> Future:
        if step.resources.gpus:
            # Restricted to workers that hold the GPUs; the worker's pool says which ones.
            resources = {"gpus": step.resources.gpus, "cpus": min(step.resources.cpus, self.worker_cpus)}
            return self.client.submit(run_gpu_step_task, payload, step.resources.gpus, self.worker_gpus,
                                      self.gpu_sharing, key=key, resources=resources, pure=False)
        # Every local worker runs one step at a time, so a CPU-only step fits any idle worker:
        # a resource restriction would only slow dask's placement.
        return self.client.submit(run_step_task, payload, key=key, pure=False)

    def submit_many(self, items: list[tuple[StepPayload, Step, str]]) -> list[Future]:
        """CPU-only steps in one ``client.map`` (one message to dask for the whole batch: measured
        1.2 ms of CPU less per step than one ``submit`` each); GPU steps one by one."""
        futures: list[Future | None] = [None] * len(items)
        plain = [i for i, (_, step, _) in enumerate(items) if not step.resources.gpus]
        if plain:
            mapped = self.client.map(run_step_task, [items[i][0] for i in plain], key=[items[i][2] for i in plain],
                                     pure=False)
            for i, future in zip(plain, mapped, strict=True):
                futures[i] = future
        for i, (payload, step, key) in enumerate(items):
            if futures[i] is None:
                futures[i] = self.submit(payload, step, key)
        return [f for f in futures if f is not None]


ExecutorFactory = Callable[[HostConfig], HostExecutor]


class HostExecutors:
    """The executors of one scheduler, made on first use, by host name."""

    def __init__(self, local: HostExecutor, project_dir: Path, store: ProjectStore,
                 factories: dict[HostKind, ExecutorFactory] | None = None) -> None:
        self.project_dir = project_dir
        self.store = store
        self._executors: dict[str, HostExecutor] = {local.name: local}
        self._factories = factories if factories is not None else default_factories(project_dir, store)

    def get(self, host_name: str) -> HostExecutor:
        """The executor of ``host_name`` (HostUnusable with the reason when there can be none)."""
        executor = self._executors.get(host_name)
        if executor is not None:
            return executor
        try:
            host = load_hosts(self.project_dir).get(host_name)
        except OrchestratorError as exc:
            raise HostUnusable(str(exc)) from None
        factory = self._factories.get(host.kind)
        if factory is None:
            raise HostUnusable(f"host {host_name!r} is of kind {host.kind.value!r}, which this scheduler "
                               "cannot run steps on yet")
        try:
            executor = factory(host)
        except OrchestratorError as exc:
            raise HostUnusable(f"host {host_name!r}: {exc}") from None
        self._executors[host_name] = executor
        log.info("host %s ready (%s)", host_name, type(executor).__name__)
        return executor

    def all(self) -> list[HostExecutor]:
        return list(self._executors.values())

    def tick(self) -> None:
        for executor in self._executors.values():
            executor.tick()

    def close(self, keep: str | None = None) -> None:
        """Close every executor but ``keep``."""
        for name, executor in list(self._executors.items()):
            if name == keep:
                continue
            try:
                executor.close()
            except OrchestratorError as exc:
                log.warning("closing host %s: %s", name, exc)
            del self._executors[name]


def default_factories(project_dir: Path, store: ProjectStore) -> dict[HostKind, ExecutorFactory]:
    """Queue hosts run in pilots and batch jobs, SSH hosts in workers started over SSH (both
    imported lazily: dask-jobqueue and paramiko are not light)."""

    def queue_executor(host: HostConfig) -> HostExecutor:
        from orchestrator.scheduler.queue_executor import QueueExecutor

        return QueueExecutor(host, project_dir, store)

    def ssh_executor(host: HostConfig) -> HostExecutor:
        from orchestrator.scheduler.ssh_executor import SSHExecutor

        return SSHExecutor(host, project_dir, store)

    return {HostKind.SLURM: queue_executor, HostKind.SGE: queue_executor, HostKind.PBS: queue_executor,
            HostKind.SSH: ssh_executor}
