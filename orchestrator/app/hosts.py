"""The execution hosts configured once: list them, show one, check one for real.

Hosts come from the hosts files (the user's, the project's ``hosts.toml``, ``ORCH_HOSTS``)
plus the built-in ``local``; a project reference adds its own file. Checking runs real
commands on the host (reachable, queue answers, work dir writable, GPUs seen).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.app.access import ProjectTarget, load_project
from orchestrator.app.serialize import Record
from orchestrator.hosts import check
from orchestrator.hosts.config.loader import load_hosts
from orchestrator.hosts.config.model import HostConfig, HostRegistry


@dataclass(frozen=True)
class HostSummary(Record):
    """A host as listed: its kind, how it is reached, its queues and GPUs, the file defining it."""

    name: str
    kind: str
    reach: str
    queues: list[str]
    gpus: str
    source: str | None

    @classmethod
    def of(cls, host: HostConfig) -> HostSummary:
        return cls(host.name, str(host.kind), reach(host), list(host.queues), gpus(host),
                   str(host.source) if host.source else None)


@dataclass(frozen=True)
class HostList(Record):
    """The hosts, and the hosts files they were read from (none: only the built-in host)."""

    hosts: list[HostSummary]
    files: list[Path]


@dataclass(frozen=True)
class HostCheck(Record):
    """The checks run on a host; ``ok`` when every one passed."""

    host: str
    kind: str
    ok: bool
    checks: list[check.CheckResult]


def host_registry(project: ProjectTarget | None = None) -> HostRegistry:
    """Every host known (with the project's own hosts file when a project is given)."""
    return load_hosts(load_project(project).path if project is not None else None)


def list_hosts(project: ProjectTarget | None = None) -> HostList:
    registry = host_registry(project)
    return HostList([HostSummary.of(host) for host in registry], list(registry.files))


def show_host(name: str, project: ProjectTarget | None = None) -> HostConfig:
    """One host's whole configuration (NotFoundError lists the known hosts)."""
    return host_registry(project).get(name)


def check_host(name: str, project: ProjectTarget | None = None) -> HostCheck:
    """Ask the host for real whether it can run steps (this runs commands on it: seconds)."""
    host = host_registry(project).get(name)
    results = check.check_host(host)
    return HostCheck(host.name, str(host.kind), all(result.ok for result in results), results)


def reach(host: HostConfig) -> str:
    """How the host is reached: over SSH, or this machine."""
    return f"ssh {host.ssh.destination}:{host.ssh.port}" if host.ssh else "this machine"


def gpus(host: HostConfig) -> str:
    """The host's GPUs: per queue on a cluster, else its count and type."""
    if host.queues:
        parts = [f"{q.name}: {q.gpus}" + (f" {q.gpu_type}" if q.gpu_type else "")
                 for q in host.queues.values() if q.gpus]
        return ", ".join(parts) or "0"
    return f"{host.gpus}" + (f" {host.gpu_type}" if host.gpu_type else "")
