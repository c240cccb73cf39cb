"""Execution hosts as plain records: what a hosts file says once a validator has read it.

A hosts file (TOML) holds ``[hosts.NAME]`` tables; :mod:`orchestrator.hosts.config.loader` reads
and validates them into these dataclasses. Nothing here touches the network or a queue.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final

from orchestrator.hosts.errors import UnknownHostError
from orchestrator.names import LOCAL_HOST


class HostKind:
    """The kinds of host that are not a queue system.

    Every other kind is the ``kind`` of a registered queue backend
    (:data:`orchestrator.hosts.queues.BACKENDS`); the loader refuses any other value, so the
    list of queue systems is written once, in that registry.
    """

    LOCAL: Final = "local"
    SSH: Final = "ssh"
    MACHINES: Final = (LOCAL, SSH)


@dataclass(frozen=True)
class SshConfig:
    """How to reach a host (or a cluster's login node) over SSH."""

    host: str
    port: int = 22
    user: str | None = None
    key: Path | None = None
    known_hosts: Path | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


@dataclass(frozen=True)
class QueueConfig:
    """One queue (or partition) of a queue system and the limits of one of its nodes.

    ``gpu_request`` and ``memory_request`` are formats with the fields ``{n}`` / ``{type}``
    and ``{mb}`` / ``{mb_per_cpu}``; ``None`` means the backend's default syntax. ``options``
    holds the keys that only this host's queue system knows (its backend's ``queue_options``).
    """

    name: str
    cores: int | None = None
    memory_mb: int | None = None
    gpus: int = 0
    gpu_type: str | None = None
    walltime_s: int | None = None
    max_nodes: int = 1
    gpu_request: str | None = None
    memory_request: str | None = None
    extra_directives: tuple[str, ...] = ()
    max_jobs: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LivenessConfig:
    """``[hosts.NAME.liveness]``: how long the scheduler waits on a host that stopped answering
    before it says so and fails the steps that wait on it (seconds; see the README's "Nothing
    stuck"). The defaults suit real sites; tests set short ones."""

    #: queue commands failing, or SSH workers that cannot be restarted, this long: the host is
    #: reported unreachable (``orch status``, ``orch queue``); its SSH steps then fail
    unreachable_after_s: float = 120.0
    #: a step that no worker can take (no worker holds its resources, or there is none) fails
    #: after this; pilot steps only while no pilot job is queued or running for them
    no_worker_s: float = 300.0
    #: an SSH worker not heard from this long is dropped (its step fails and is retried)
    worker_silence_s: float = 120.0
    #: a batch job gone from the queue with neither an accounting record nor an exit sentinel
    #: is failed after this
    lost_job_after_s: float = 120.0


@dataclass(frozen=True)
class PilotConfig:
    """Pilot workers (dask-jobqueue jobs): the size of one pilot and how many may run."""

    queue: str | None = None
    #: False: no pilots on this host, every step runs as its own batch job (sites whose compute
    #: nodes cannot reach the scheduler's port, or that forbid long-lived jobs)
    enabled: bool = True
    cores: int = 1
    memory_mb: int = 2048
    walltime_s: int = 3600
    processes: int = 1
    gpus: int = 0
    min_pilots: int = 0
    max_pilots: int | None = None
    interface: str | None = None
    extra_directives: tuple[str, ...] = ()
    local_directory: str | None = None
    python: str | None = None
    #: a pilot job the queue runs whose dask worker has not connected after this is cancelled
    connect_timeout_s: float = 180.0
    #: that many pilots in a row that never connect: the host is reported unreachable and its
    #: pilot steps fail with the reason
    connect_failures: int = 3


@dataclass(frozen=True)
class HostConfig:
    """One execution host, validated. ``source`` is the file it came from (None: built in)."""

    name: str
    #: ``HostKind.LOCAL``, ``HostKind.SSH`` or a queue backend's ``kind``
    kind: str
    source: Path | None = None
    description: str = ""
    ssh: SshConfig | None = None
    work_dir: str = ""
    shared_fs: bool = False
    path_map: tuple[tuple[str, str], ...] = ()
    env_setup: tuple[str, ...] = ()
    cores: int | None = None
    memory_mb: int | None = None
    gpus: int = 0
    #: whether the file sets ``gpus`` (on the local host, GPUs not declared are detected)
    gpus_declared: bool = False
    gpu_type: str | None = None
    gpu_sharing: bool = False
    workers: int | None = None
    #: the interpreter on an SSH host that has em-orchestrator and the plugins (default python3)
    python: str | None = None
    queues: dict[str, QueueConfig] = field(default_factory=dict)
    default_queue: str | None = None
    extra_directives: tuple[str, ...] = ()
    max_jobs: int | None = None
    template: str | None = None
    pilot: PilotConfig = field(default_factory=PilotConfig)
    user: str | None = None
    #: ``[hosts.NAME.programs]``: how a program starts on this host (argument lists, e.g.
    #: ``mpirun = ("mpirun", "--oversubscribe")``); steps read them with ``ctx.program(name, default)``
    programs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: ``[hosts.NAME.liveness]``: grace periods and limits of the scheduler's watch on the host
    liveness: LivenessConfig = field(default_factory=LivenessConfig)

    @property
    def is_queue(self) -> bool:
        return self.kind not in HostKind.MACHINES

    @property
    def is_remote(self) -> bool:
        return self.ssh is not None

    def queue(self, name: str | None = None) -> QueueConfig:
        """The named queue, or the default one; an unknown name is a clear error."""
        wanted = name or self.default_queue
        if wanted is None or wanted not in self.queues:
            known = ", ".join(sorted(self.queues)) or "none"
            where = f" (from {self.source})" if self.source else ""
            raise UnknownHostError(f"host {self.name!r}{where} has no queue {wanted!r}; queues: {known}")
        return self.queues[wanted]

    def map_path(self, path: str | os.PathLike[str]) -> str:
        """A path of this machine as the host sees it (longest matching ``path_map`` prefix)."""
        text = os.fspath(path)
        best: tuple[str, str] | None = None
        for local, remote in self.path_map:
            if (text == local or text.startswith(local.rstrip("/") + "/")) and (
                    best is None or len(local) > len(best[0])):
                best = (local, remote)
        if best is None:
            return text
        rest = text[len(best[0].rstrip("/")):].lstrip("/")
        return str(PurePosixPath(best[1]) / rest) if rest else best[1]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``orch hosts show --json``."""
        data: dict[str, Any] = {
            "name": self.name, "kind": self.kind, "source": str(self.source) if self.source else None,
            "description": self.description, "work_dir": self.work_dir, "shared_fs": self.shared_fs,
            "path_map": dict(self.path_map), "env_setup": list(self.env_setup), "cores": self.cores,
            "memory_mb": self.memory_mb, "gpus": self.gpus, "gpu_type": self.gpu_type,
            "gpu_sharing": self.gpu_sharing, "workers": self.workers, "python": self.python,
            "default_queue": self.default_queue,
            "extra_directives": list(self.extra_directives), "max_jobs": self.max_jobs,
            "template": self.template, "user": self.user,
            "programs": {name: list(command) for name, command in self.programs.items()},
            "liveness": dict(vars(self.liveness)),
        }
        if self.ssh:
            data["ssh"] = {"host": self.ssh.host, "port": self.ssh.port, "user": self.ssh.user,
                           "key": str(self.ssh.key) if self.ssh.key else None,
                           "known_hosts": str(self.ssh.known_hosts) if self.ssh.known_hosts else None}
        if self.queues:
            data["queues"] = {name: {**vars(q), "extra_directives": list(q.extra_directives),
                                     "options": dict(q.options)}
                              for name, q in self.queues.items()}
            data["pilot"] = {**vars(self.pilot), "extra_directives": list(self.pilot.extra_directives)}
        return data


BUILT_IN_LOCAL_HOST = HostConfig(name=LOCAL_HOST, kind=HostKind.LOCAL, description="this machine (built in)",
                        shared_fs=True, cores=os.cpu_count() or 1)


@dataclass
class HostRegistry:
    """The hosts known to a project: every file read, later files overriding by host name."""

    hosts: dict[str, HostConfig]
    files: list[Path] = field(default_factory=list)

    def get(self, name: str) -> HostConfig:
        try:
            return self.hosts[name]
        except KeyError:
            searched = ", ".join(str(p) for p in self.files) or "no hosts file found"
            raise UnknownHostError(
                f"unknown host {name!r}; known: {', '.join(sorted(self.hosts))} (read: {searched})") from None

    def __contains__(self, name: object) -> bool:
        return name in self.hosts

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.hosts.values())

    def names(self) -> list[str]:
        return list(self.hosts)
