"""Where steps run: the executors of one scheduler, one per execution host, made on first use.

The contract is :class:`~orchestrator.scheduler.executors.base.HostExecutor`; the
implementations are :mod:`.local` (the workstation's LocalCluster), :mod:`.queue` (pilots and
batch jobs on every registered queue system) and :mod:`.ssh` (dask workers started over SSH). The objects
their tasks look up inside the scheduler's process live in :mod:`.live`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from orchestrator.errors import OrchestratorError
from orchestrator.hosts.config.loader import load_hosts
from orchestrator.hosts.config.model import HostConfig, HostKind
from orchestrator.scheduler.executors.base import ExecutorFactory, HostExecutor, HostUnusable
from orchestrator.scheduler.live_hosts import LiveHostsRecorder
from orchestrator.store import ProjectStore

log = logging.getLogger(__name__)

__all__ = ["ExecutorFactory", "HostExecutor", "HostExecutors", "HostUnusable", "default_factories"]


class HostExecutors:
    """The executors of one scheduler, made on first use, by host name."""

    def __init__(self, local: HostExecutor, project_dir: Path, store: ProjectStore,
                 factories: dict[str, ExecutorFactory] | None = None) -> None:
        self.project_dir = project_dir
        self.store = store
        self._executors: dict[str, HostExecutor] = {local.name: local}
        self._factories = factories if factories is not None else default_factories(project_dir, store)
        self._live = LiveHostsRecorder(project_dir)  # the dashboards' ports and pilots, for the web interface

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
            raise HostUnusable(f"host {host_name!r} is of kind {host.kind!r}, which this scheduler "
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
        self._live.note(dict(self._executors))

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


def default_factories(project_dir: Path, store: ProjectStore) -> dict[str, ExecutorFactory]:
    """Queue hosts (every registered queue system) run in pilots and batch jobs, SSH hosts in
    workers started over SSH (both imported lazily: dask-jobqueue and paramiko are not light)."""
    from orchestrator.hosts.queues import BACKENDS

    def queue_executor(host: HostConfig) -> HostExecutor:
        from orchestrator.scheduler.executors.queue import QueueExecutor

        return QueueExecutor(host, project_dir, store)

    def ssh_executor(host: HostConfig) -> HostExecutor:
        from orchestrator.scheduler.executors.ssh import SSHExecutor

        return SSHExecutor(host, project_dir, store)

    return {**dict.fromkeys(BACKENDS, queue_executor), HostKind.SSH: ssh_executor}
