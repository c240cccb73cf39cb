"""The hosts as the web interface shows them, across the projects it serves: each host's state
(reachable, pilots, GPUs used and free, its dask dashboard) and where a dashboard listens.

Everything comes from what is written down, never from the scheduler's process: the hosts files,
the health and the running steps in each project's store, and what the scheduler records of its
hosts (:mod:`orchestrator.scheduler.live_hosts`: dashboards' loopback ports, pilots). The batch
jobs themselves are :func:`orchestrator.app.queue.queue_jobs` (it asks the queues).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.app.access import ProjectTarget, load_project, project_store
from orchestrator.app.host_health import HostHealthInfo, hosts_health
from orchestrator.app.hosts import HostSummary
from orchestrator.app.serialize import Record
from orchestrator.errors import NotFoundError, OrchestratorError
from orchestrator.hosts.config.loader import load_hosts
from orchestrator.hosts.config.model import HostConfig, HostKind
from orchestrator.hosts.fit import pilots_enabled
from orchestrator.hosts.gpus import host_gpu_devices
from orchestrator.scheduler.live_hosts import LiveHost, LiveHosts, read_live_hosts
from orchestrator.scheduler.lock import running_pid
from orchestrator.store import ProjectStore, RunState, StepState

#: dashboards are only ever reached here: what our dask clusters bind them to
DASHBOARD_HOST = "127.0.0.1"


@dataclass(frozen=True)
class HostUse(Record):
    """One project's view of a host: its scheduler's health report, the GPUs its running steps
    hold there, and (while its scheduler runs) the pilots and dashboard it holds."""

    project: str
    health: HostHealthInfo | None
    steps_running: int
    gpus_used: int
    pilots: int | None
    workers: int | None
    dashboard: bool


@dataclass(frozen=True)
class HostState(Record):
    """A configured host and what every served project knows of it.

    ``gpus_total`` is what the host offers when that is known here (a machine's declared or
    detected GPUs; a queue's pilots' GPUs while pilots run), else None: a cluster's free GPUs
    are the queue's to say. ``project`` is the served project whose hosts files defined it (None:
    no project was served; the user's files alone): the one to check it through."""

    host: HostSummary
    project: str | None
    gpus_total: int | None
    uses: list[HostUse]
    #: a queue host whose steps run in pilot jobs (False: one batch job per step, or not a queue)
    pilot_jobs: bool = False

    @property
    def state(self) -> str:
        """``unreachable`` when a scheduler says so, ``ok`` when one found it answering (this machine
        always is), else ``unknown``."""
        reports = [use.health for use in self.uses if use.health is not None]
        if any(report.unreachable for report in reports):
            return "unreachable"
        return "ok" if reports or self.host.kind == HostKind.LOCAL else "unknown"

    @property
    def gpus_used(self) -> int:
        return sum(use.gpus_used for use in self.uses)

    @property
    def gpus_free(self) -> int | None:
        return None if self.gpus_total is None else max(0, self.gpus_total - self.gpus_used)

    @property
    def pilots(self) -> int | None:
        counts = [use.pilots for use in self.uses if use.pilots is not None]
        return sum(counts) if counts else None


@dataclass(frozen=True)
class HostsOverview(Record):
    """Every host of the served projects' hosts files (and the user's), by name; the files read;
    per project, the error that kept its hosts file or store from being read."""

    hosts: list[HostState]
    files: list[Path]
    errors: dict[str, str]


@dataclass(frozen=True)
class DashboardAddress(Record):
    """Where a host's dask dashboard listens: always :data:`DASHBOARD_HOST`, a recorded port."""

    project: str
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{DASHBOARD_HOST}:{self.port}"


def hosts_overview(projects: Sequence[ProjectTarget]) -> HostsOverview:
    """The hosts of ``projects`` (with none: the user's hosts files alone), each with what every
    project's store and scheduler say of it."""
    configs: dict[str, tuple[HostConfig, str | None]] = {}
    files: list[Path] = []
    uses: dict[str, list[HostUse]] = {}
    errors: dict[str, str] = {}
    if not projects:
        registry = load_hosts(None)
        configs.update((host.name, (host, None)) for host in registry)
        files += [path for path in registry.files if path not in files]
    for target in projects:
        try:
            project = load_project(target)
            registry = load_hosts(project.path)
            with project_store(target) as (_project, store):
                project_uses = _project_uses(project.name, project.path, store)
        except OrchestratorError as exc:
            errors[getattr(target, "name", None) or str(target)] = str(exc)
            continue
        for host in registry:
            configs.setdefault(host.name, (host, project.name))
        files += [path for path in registry.files if path not in files]
        for name, use in project_uses.items():
            uses.setdefault(name, []).append(use)
    hosts = [HostState(HostSummary.of(config), defined_by, _gpus_total(config, uses.get(name, [])), uses.get(name, []),
                       config.is_queue and pilots_enabled(config))
             for name, (config, defined_by) in sorted(configs.items(), key=lambda item: (item[0] != "local", item[0]))]
    return HostsOverview(hosts, files, errors)


def dashboard_address(target: ProjectTarget, host: str) -> DashboardAddress:
    """Where ``host``'s dashboard of the project's scheduler listens now; NotFoundError when the
    scheduler does not run here or recorded no dashboard for that host."""
    project = load_project(target)
    live = live_hosts(project.path)
    recorded = live.hosts.get(host) if live is not None else None
    if recorded is None or recorded.dashboard_port is None:
        raise NotFoundError(f"project {project.name} has no dask dashboard for host {host!r} now: its scheduler "
                            "is not running, or has not started a cluster for that host")
    return DashboardAddress(project.name, host, recorded.dashboard_port)


def live_hosts(project_dir: Path) -> LiveHosts | None:
    """What the project's scheduler recorded of its hosts, if that scheduler still runs on this machine."""
    from orchestrator.project import Project

    live = read_live_hosts(project_dir)
    if live is None or live.machine != socket.gethostname():
        return None
    pid = running_pid(Project.load(project_dir))
    return live if pid is not None and pid == live.pid else None


def _project_uses(project_name: str, project_dir: Path, store: ProjectStore) -> dict[str, HostUse]:
    health = {info.host: info for info in hosts_health(store)}
    running: dict[str, list[int]] = {}  # host -> GPUs held by each running step there
    for run in store.runs.list([RunState.RUNNING]):
        for step in store.steps.list(run.id, [StepState.RUNNING]):
            if step.host:
                held = len(step.gpus) if step.gpus else int((step.resources or {}).get("gpus") or 0)
                running.setdefault(step.host, []).append(held)
    live = live_hosts(project_dir)
    live_by_host: dict[str, LiveHost] = live.hosts if live is not None else {}
    names = set(health) | set(running) | set(live_by_host)
    return {name: HostUse(project_name, health.get(name), len(running.get(name, [])), sum(running.get(name, [])),
                          live_by_host[name].pilots if name in live_by_host else None,
                          live_by_host[name].workers if name in live_by_host else None,
                          name in live_by_host and live_by_host[name].dashboard_port is not None)
            for name in names}


def _gpus_total(host: HostConfig, uses: list[HostUse]) -> int | None:
    if host.kind == HostKind.LOCAL:
        try:
            return len(host_gpu_devices(host.gpus if host.gpus_declared else None)[0])
        except OrchestratorError:  # an allocation smaller than the declared GPUs: the scheduler says so
            return None
    if host.kind == HostKind.SSH:
        return host.gpus
    pilots = [use.pilots for use in uses if use.pilots is not None]
    return sum(pilots) * host.pilot.gpus if pilots and host.pilot.gpus else None
