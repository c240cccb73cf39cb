"""What the scheduler's hosts hold now, for front ends that cannot ask the scheduler: each
host's dask dashboard (a loopback port of the scheduler's process) and its pilots.

Every dask cluster of ours serves its dashboard on 127.0.0.1 and a port chosen at start
(``LOOPBACK_HTTP``), so nothing outside the scheduler knows where it is. The scheduler writes
``<project>/.orch/hosts-live.json`` when that changes (:meth:`LiveHostsRecorder.note`, from
``HostExecutors.tick``), with its pid and machine; the web interface reads it
(:func:`read_live_hosts`) and trusts it only while that pid still holds the project's
scheduler lock on this machine: a port left in the file by a scheduler that is gone may
belong to anything by now.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LIVE_FILE = Path(".orch") / "hosts-live.json"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveHost:
    """One host as its executor holds it: the dashboard's loopback port (None: no dask cluster
    of its own started yet), pilot jobs asked for (None: not a queue with pilots) and dask
    workers connected now."""

    host: str
    dashboard_port: int | None
    pilots: int | None
    workers: int | None


@dataclass(frozen=True)
class LiveHosts:
    """The file's content: who wrote it (pid, machine) and its hosts by name."""

    pid: int
    machine: str
    hosts: dict[str, LiveHost]


def executor_view(name: str, executor: object) -> LiveHost:
    """What an executor holds, read without starting anything (a local cluster not yet started stays so)."""
    fields = getattr(executor, "__dict__", {})
    cluster = fields.get("_cluster") if fields.get("_cluster") is not None else fields.get("cluster")
    port = workers = None
    info = getattr(cluster, "scheduler_info", None) if cluster is not None else None
    if isinstance(info, dict):
        dashboard = (info.get("services") or {}).get("dashboard")
        port = dashboard if isinstance(dashboard, int) and 0 < dashboard < 65536 else None
        workers = len(info.get("workers") or {})
    pilots = None
    describe = getattr(executor, "describe", None)
    if callable(describe) and getattr(executor, "pilots", False):
        pilots = describe().get("pilots")
    return LiveHost(name, port, pilots if isinstance(pilots, int) else None, workers)


def write_live_hosts(project_dir: Path, hosts: Iterable[LiveHost]) -> None:
    """Replace the file at once (a reader never sees half of it); readable by its owner only."""
    path = Path(project_dir) / LIVE_FILE
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = {"pid": os.getpid(), "machine": socket.gethostname(), "hosts": [asdict(host) for host in hosts]}
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        json.dump(data, stream)
    os.replace(partial, path)


def read_live_hosts(project_dir: Path) -> LiveHosts | None:
    """The file as the scheduler last wrote it (None: no file, or not one of ours)."""
    try:
        data: Any = json.loads((Path(project_dir) / LIVE_FILE).read_text())
        hosts = {}
        for item in data["hosts"]:
            host = LiveHost(str(item["host"]), _int_or_none(item.get("dashboard_port")),
                            _int_or_none(item.get("pilots")), _int_or_none(item.get("workers")))
            hosts[host.host] = host
        return LiveHosts(int(data["pid"]), str(data["machine"]), hosts)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class LiveHostsRecorder:
    """Writes the file when what the executors hold changed since the last write."""

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir
        self._last: list[LiveHost] | None = None

    def note(self, executors: dict[str, object]) -> None:
        view = [executor_view(name, executor) for name, executor in sorted(executors.items())]
        if view != self._last:
            try:
                write_live_hosts(self.project_dir, view)
            except OSError as exc:  # the front ends then show no dashboard: never a reason to stop scheduling
                log.warning("cannot write %s: %s", self.project_dir / LIVE_FILE, exc)
                return
            self._last = view
