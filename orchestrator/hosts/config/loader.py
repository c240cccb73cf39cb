"""Read and validate hosts files (TOML) into :class:`HostConfig` records.

Where hosts come from, later overriding earlier by host name:

1. ``~/.config/orchestrator/hosts.toml`` (``$XDG_CONFIG_HOME`` when set): the user's or site's;
2. the project's ``hosts.toml``;
3. ``ORCH_HOSTS``: one or more paths (``os.pathsep``-separated) that must exist;

plus the built-in ``local`` host unless a file defines one. Every problem is reported with the
file, the host and the key (``hosts.toml: host 'gpu': key 'queues.gpu.cores': ...``); unknown
keys are errors, with a suggestion when one is close to a known key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.hosts.config.model import (
    BUILT_IN_LOCAL_HOST,
    HostConfig,
    HostKind,
    HostRegistry,
    LivenessConfig,
    PilotConfig,
    QueueConfig,
    SshConfig,
)
from orchestrator.hosts.config.validate import Table as _Table
from orchestrator.hosts.config.validate import bool_value as _bool
from orchestrator.hosts.config.validate import expand_path as _expand_path
from orchestrator.hosts.config.validate import format_value as _format
from orchestrator.hosts.config.validate import int_value as _int
from orchestrator.hosts.config.validate import is_file as _is_file
from orchestrator.hosts.config.validate import lines as _lines
from orchestrator.hosts.config.validate import memory as _memory
from orchestrator.hosts.config.validate import nonempty_str as _nonempty_str
from orchestrator.hosts.config.validate import one_line_str as _str
from orchestrator.hosts.config.validate import path_value as _path
from orchestrator.hosts.config.validate import period as _period
from orchestrator.hosts.config.validate import program_command as _program_command
from orchestrator.hosts.config.validate import program_name as _program_name
from orchestrator.hosts.config.validate import queue_name as _queue_name
from orchestrator.hosts.config.validate import walltime as _walltime
from orchestrator.hosts.errors import HostConfigError

if TYPE_CHECKING:
    from orchestrator.hosts.queues.base import QueueBackend, QueueOption

HOSTS_FILE_NAME = "hosts.toml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

_COMMON_KEYS = {"kind", "description", "work_dir", "env_setup", "ssh", "shared_fs", "path_map", "programs",
                "liveness"}
_MACHINE_KEYS = {"cores", "memory", "gpus", "gpu_type", "gpu_sharing", "workers", "python"}
_QUEUE_HOST_KEYS = {"queues", "default_queue", "extra_directives", "max_jobs", "template", "pilot",
                    "gpu_sharing", "user"}
_KEYS_BY_KIND = {
    HostKind.LOCAL: _COMMON_KEYS - {"ssh"} | _MACHINE_KEYS,
    HostKind.SSH: _COMMON_KEYS | _MACHINE_KEYS,
}
#: the keys of a queue table every queue system knows; each backend adds its ``queue_options``
_QUEUE_KEYS = {"cores", "memory", "gpus", "gpu_type", "walltime", "max_nodes", "gpu_request",
               "memory_request", "extra_directives", "max_jobs"}
_PILOT_KEYS = {"enabled", "queue", "cores", "memory", "walltime", "processes", "gpus", "min_pilots", "max_pilots",
               "interface", "extra_directives", "local_directory", "python", "connect_timeout", "connect_failures"}
_LIVENESS_KEYS = {"unreachable_after", "no_worker_limit", "worker_silence", "lost_job_after"}
_SSH_KEYS = {"host", "port", "user", "key", "known_hosts"}


def _queue_backends() -> dict[str, type[QueueBackend]]:
    """The registered queue systems, by kind (imported only when a file names a queue host)."""
    from orchestrator.hosts.queues import BACKENDS

    return BACKENDS


def _host_kinds() -> list[str]:
    return [*HostKind.MACHINES, *_queue_backends()]


# -- sections --

def _read_ssh(table: _Table) -> SshConfig | None:
    if not table.data.get("host"):
        table.take("host", required=True)
        table.finish(_SSH_KEYS)
        return None
    base = table.file.parent
    ssh = SshConfig(host=table.take("host", check=_nonempty_str), port=table.take("port", 22, check=_int(1)),
                    user=table.take("user", None, check=_nonempty_str), key=table.take("key", None, check=_path(base)),
                    known_hosts=table.take("known_hosts", None, check=_path(base)))
    table.finish(_SSH_KEYS)
    return ssh


def _read_queue(name: str, table: _Table, own_keys: Mapping[str, QueueOption]) -> QueueConfig:
    try:
        _queue_name(name)
    except ValueError as exc:
        table.problems.append(f"{table.file}: host {table.host!r}: queue {name!r}: {exc}")
    queue = QueueConfig(
        name=name,
        cores=table.take("cores", None, check=_int(1)),
        memory_mb=table.take("memory", None, check=_memory),
        gpus=table.take("gpus", 0, check=_int(0)),
        gpu_type=table.take("gpu_type", None, check=_nonempty_str),
        walltime_s=table.take("walltime", None, check=_walltime),
        max_nodes=table.take("max_nodes", 1, check=_int(1)),
        gpu_request=table.take("gpu_request", None, check=_format({"n", "type"})),
        memory_request=table.take("memory_request", None, check=_format({"mb", "mb_per_cpu", "gb"})),
        extra_directives=table.take("extra_directives", (), check=_lines),
        max_jobs=table.take("max_jobs", None, check=_int(1)),
        options={key: table.take(key, option.default, check=option.check) for key, option in own_keys.items()},
    )
    table.finish(_QUEUE_KEYS | set(own_keys))
    return queue


def _read_pilot(table: _Table | None, queues: Mapping[str, QueueConfig], default_queue: str | None) -> PilotConfig:
    if table is None:
        return PilotConfig(queue=default_queue)
    pilot = PilotConfig(
        queue=table.take("queue", None, check=_queue_name),
        enabled=table.take("enabled", True, check=_bool),
        cores=table.take("cores", 1, check=_int(1)),
        memory_mb=table.take("memory", 2048, check=_memory),
        walltime_s=table.take("walltime", 3600, check=_walltime),
        processes=table.take("processes", 1, check=_int(1)),
        gpus=table.take("gpus", 0, check=_int(0)),
        min_pilots=table.take("min_pilots", 0, check=_int(0)),
        max_pilots=table.take("max_pilots", None, check=_int(1)),
        interface=table.take("interface", None, check=_nonempty_str),
        extra_directives=table.take("extra_directives", (), check=_lines),
        local_directory=table.take("local_directory", None, check=_nonempty_str),
        python=table.take("python", None, check=_nonempty_str),
        connect_timeout_s=table.take("connect_timeout", PilotConfig.connect_timeout_s, check=_period),
        connect_failures=table.take("connect_failures", PilotConfig.connect_failures, check=_int(1)),
    )
    if pilot.queue is None:
        pilot = replace(pilot, queue=default_queue)
    if pilot.queue is not None and queues and pilot.queue not in queues:
        table.problem("queue", f"names no queue of this host ({', '.join(sorted(queues))})")
    if pilot.max_pilots is not None and pilot.min_pilots > pilot.max_pilots:
        table.problem("min_pilots", f"({pilot.min_pilots}) is more than max_pilots ({pilot.max_pilots})")
    queue = queues.get(pilot.queue) if pilot.queue else None
    if queue is not None:
        if queue.cores and pilot.cores > queue.cores:
            table.problem("cores", f"{pilot.cores} is more than queue {queue.name!r} has per node ({queue.cores})")
        if pilot.gpus > queue.gpus:
            table.problem("gpus", f"{pilot.gpus} is more than queue {queue.name!r} has per node ({queue.gpus})")
    if pilot.cores % pilot.processes:
        table.problem("processes", f"{pilot.processes} does not divide cores ({pilot.cores})")
    table.finish(_PILOT_KEYS)
    return pilot


def _read_liveness(table: _Table | None) -> LivenessConfig:
    """``[hosts.NAME.liveness]``: the grace periods and limits of the scheduler's watch on the host."""
    if table is None:
        return LivenessConfig()
    defaults = LivenessConfig()
    liveness = LivenessConfig(
        unreachable_after_s=table.take("unreachable_after", defaults.unreachable_after_s, check=_period),
        no_worker_s=table.take("no_worker_limit", defaults.no_worker_s, check=_period),
        worker_silence_s=table.take("worker_silence", defaults.worker_silence_s, check=_period),
        lost_job_after_s=table.take("lost_job_after", defaults.lost_job_after_s, check=_period),
    )
    table.finish(_LIVENESS_KEYS)
    return liveness


def _read_programs(table: _Table | None) -> dict[str, tuple[str, ...]]:
    """``[hosts.NAME.programs]``: program name -> the command (argument list) that starts it here."""
    programs: dict[str, tuple[str, ...]] = {}
    if table is None:
        return programs
    for program in list(table.data):
        try:
            _program_name(program)
        except ValueError as exc:
            table.data.pop(program)
            table.problem(program, str(exc))
            continue
        command = table.take(program, None, check=_program_command)
        if command is not None:
            programs[program] = command
    return programs


def _read_host(name: str, data: Any, file: Path, problems: list[str]) -> HostConfig | None:
    if not _NAME.match(name):
        problems.append(f"{file}: host {name!r}: invalid host name (letters, digits, '_', '.', '-')")
        return None
    if not isinstance(data, dict):
        problems.append(f"{file}: host {name!r}: must be a table ([hosts.{name}]), got {type(data).__name__}")
        return None
    table = _Table(data, file, name, "", problems)
    kind = table.take("kind", required=True, check=_nonempty_str)
    if kind is None:
        return None
    backend = None if kind in HostKind.MACHINES else _queue_backends().get(kind)
    if kind not in HostKind.MACHINES and backend is None:
        table.problem("kind", f"must be one of {', '.join(_host_kinds())}, got {kind!r}")
        return None
    is_queue = backend is not None
    before = len(problems)
    ssh_table = table.table("ssh")
    ssh = _read_ssh(ssh_table) if ssh_table is not None else None
    if kind == HostKind.SSH and ssh_table is None:
        table.problem("ssh", "is required for kind 'ssh' (host, port, user, key, known_hosts)")
    if kind == HostKind.LOCAL and ssh_table is not None:
        table.problem("ssh", "makes no sense for kind 'local': use kind 'ssh'")
    shared_fs = table.take("shared_fs", kind == HostKind.LOCAL, check=_bool)
    path_map: tuple[tuple[str, str], ...] = ()
    map_table = table.table("path_map")
    if map_table is not None:
        if not shared_fs:
            table.problem("path_map", "needs shared_fs = true (a path map translates paths of a shared file system)")
        pairs = []
        for local, remote in list(map_table.data.items()):
            map_table.data.pop(local)
            if not local.startswith("/") or not isinstance(remote, str) or not remote.startswith("/"):
                map_table.problem(local, f"must map an absolute path to an absolute path, got {remote!r}")
            else:
                pairs.append((local, remote))
        path_map = tuple(pairs)
    work_dir = table.take("work_dir", "", check=_nonempty_str)
    if kind == HostKind.SSH and not shared_fs and not work_dir:
        table.problem("work_dir", "is required for an SSH host without a shared file system")
    queues: dict[str, QueueConfig] = {}
    queues_table = table.table("queues") if is_queue else None
    if queues_table is not None:
        for queue_name, queue_data in list(queues_table.data.items()):
            queues_table.data.pop(queue_name)
            if not isinstance(queue_data, dict):
                queues_table.problem(queue_name, f"must be a table ([hosts.{name}.queues.{queue_name}])")
                continue
            sub = _Table(queue_data, file, name, f"queues.{queue_name}.", problems)
            queues[queue_name] = _read_queue(queue_name, sub, backend.queue_options if backend else {})
    if is_queue and not queues:
        table.problem("queues", f"a {kind} host needs at least one [hosts.{name}.queues.NAME] table")
    default_queue = table.take("default_queue", None, check=_queue_name) if is_queue else None
    if default_queue is not None and queues and default_queue not in queues:
        table.problem("default_queue", f"names no queue of this host ({', '.join(sorted(queues))})")
    if default_queue is None and queues:
        default_queue = next(iter(queues))
    pilot = _read_pilot(table.table("pilot"), queues, default_queue) if is_queue else PilotConfig()
    template = table.take("template", None, check=_nonempty_str) if is_queue else None
    if template is not None:
        try:
            candidate = _expand_path(template, file.parent)
        except ValueError as exc:
            table.problem("template", str(exc))
        else:
            if _is_file(candidate):
                template = str(candidate)
            else:
                from orchestrator.hosts.queues.jobscript import template_exists

                try:
                    found = template_exists(template)
                except (OSError, ValueError):  # a name the system refuses (too long, NUL)
                    found = False
                if not found:
                    table.problem("template", f"no such template: not a file ({candidate}) nor a name in templates/")
    host = HostConfig(
        name=name, kind=kind, source=file,
        description=table.take("description", "", check=_str),
        ssh=ssh, work_dir=work_dir or "", shared_fs=shared_fs, path_map=path_map,
        env_setup=table.take("env_setup", (), check=_lines),
        cores=table.take("cores", None, check=_int(1)) if not is_queue else None,
        memory_mb=table.take("memory", None, check=_memory) if not is_queue else None,
        gpus=table.take("gpus", 0, check=_int(0)) if not is_queue else 0,
        gpus_declared=not is_queue and "gpus" in data,
        gpu_type=table.take("gpu_type", None, check=_nonempty_str) if not is_queue else None,
        gpu_sharing=table.take("gpu_sharing", False, check=_bool),
        workers=table.take("workers", None, check=_int(1)) if not is_queue else None,
        python=table.take("python", None, check=_nonempty_str) if not is_queue else None,
        queues=queues, default_queue=default_queue,
        extra_directives=table.take("extra_directives", (), check=_lines) if is_queue else (),
        max_jobs=table.take("max_jobs", None, check=_int(1)) if is_queue else None,
        template=template, pilot=pilot,
        user=table.take("user", None, check=_nonempty_str) if is_queue else None,
        programs=_read_programs(table.table("programs")),
        liveness=_read_liveness(table.table("liveness")),
    )
    keys = _COMMON_KEYS | _QUEUE_HOST_KEYS if is_queue else _KEYS_BY_KIND[kind]
    table.finish(keys, context=f"for kind {kind!r}")
    return host if len(problems) == before else None


def parse_hosts(text: str, source: Path) -> dict[str, HostConfig]:
    """Validate the text of one hosts file; raise :class:`HostConfigError` listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HostConfigError(f"{source}: not valid TOML: {exc}") from None
    problems: list[str] = []
    hosts: dict[str, HostConfig] = {}
    for key in data:
        if key != "hosts":
            problems.append(f"{source}: unknown top-level key {key!r} (hosts are [hosts.NAME] tables)")
    section = data.get("hosts", {})
    if not isinstance(section, dict):
        problems.append(f"{source}: key 'hosts' must be a table of [hosts.NAME] tables")
        section = {}
    for name, host_data in section.items():
        host = _read_host(name, host_data, source, problems)
        if host is not None:
            hosts[name] = host
    if problems:
        head = f"{len(problems)} problem(s) in hosts file {source}:" if len(problems) > 1 else ""
        raise HostConfigError("\n".join(([head] if head else []) + problems))
    return hosts


def load_hosts_file(path: Path) -> dict[str, HostConfig]:
    """Read and validate one hosts file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HostConfigError(f"{path}: cannot read hosts file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise HostConfigError(f"{path}: line {line}: byte {exc.start} is not UTF-8 (TOML is UTF-8 text)") from None
    return parse_hosts(text, path)


def user_hosts_file(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "orchestrator" / HOSTS_FILE_NAME


def hosts_files(project_dir: Path | None = None, *, env: Mapping[str, str] | None = None,
                user_config: Path | None = None) -> list[Path]:
    """The hosts files to read, lowest precedence first (only those that exist, but
    ``ORCH_HOSTS`` paths must exist)."""
    env = os.environ if env is None else env
    files = []
    user = user_config if user_config is not None else user_hosts_file(env)
    if user.is_file():
        files.append(user)
    if project_dir is not None and (Path(project_dir) / HOSTS_FILE_NAME).is_file():
        files.append(Path(project_dir) / HOSTS_FILE_NAME)
    for item in filter(None, env.get("ORCH_HOSTS", "").split(os.pathsep)):
        path = Path(item).expanduser()
        if not path.is_file():
            raise HostConfigError(f"ORCH_HOSTS names {path}, which is not a file")
        files.append(path)
    return files


def load_hosts(project_dir: Path | None = None, *, env: Mapping[str, str] | None = None,
               user_config: Path | None = None) -> HostRegistry:
    """Every host the project can use: the built-in ``local`` plus the hosts files'."""
    files = hosts_files(project_dir, env=env, user_config=user_config)
    hosts: dict[str, HostConfig] = {BUILT_IN_LOCAL_HOST.name: BUILT_IN_LOCAL_HOST}
    for path in files:
        hosts.update(load_hosts_file(path))
    return HostRegistry(hosts=hosts, files=files)
