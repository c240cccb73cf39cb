"""The software a run used: Python, the key libraries, its protocol's plugin, and the versions
of the external programs the plugin declares (``relion_refine --version``), asked once per
host and scheduler process.

Versions are read from installed distributions (``importlib.metadata``), never by importing
the packages, so recording them costs milliseconds.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import metadata
from typing import Any

from orchestrator.names import LOCAL_HOST
from orchestrator.plugins import Plugin

#: The distributions whose versions decide what a run computes or how it ran.
KEY_DISTRIBUTIONS = ("em-orchestrator", "numpy", "scipy", "mrcfile", "dask", "distributed", "dask-jobqueue",
                     "SQLAlchemy", "paramiko", "psutil")


def distribution_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def python_environment() -> dict[str, Any]:
    """Python, the platform and the key libraries of the process that schedules the runs."""
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "libraries": {name: distribution_version(name) for name in KEY_DISTRIBUTIONS},
    }


def plugin_entry(plugin: Plugin) -> dict[str, Any]:
    return {"name": plugin.name, "version": plugin.version}


#: (version command) -> (path, version), asked once per process (a scheduler, a worker)
_ASKED: dict[tuple[str, ...], tuple[str | None, str | None]] = {}
VERSION_TIMEOUT_S = 10.0


def ask_version(command: Sequence[str], timeout_s: float = VERSION_TIMEOUT_S) -> tuple[str | None, str | None]:
    """(path, first line printed) of a version command such as ``relion_refine --version``;
    None for what cannot be found or told. Asked once per process and command."""
    key = tuple(command)
    if key not in _ASKED:
        path = shutil.which(command[0]) if command else None
        version = None
        if path is not None:
            try:
                done = subprocess.run([path, *command[1:]], capture_output=True, text=True, timeout=timeout_s,
                                      check=False, stdin=subprocess.DEVNULL)
                lines = (done.stdout or done.stderr).strip().splitlines()
                version = lines[0].strip() if lines else None
            except (OSError, subprocess.TimeoutExpired) as exc:
                version = f"unknown ({type(exc).__name__})"
        _ASKED[key] = (path, version)
    return _ASKED[key]


def ask_versions(commands: Mapping[str, Sequence[str]]) -> dict[str, dict[str, str | None]]:
    """``name -> {"path", "version"}`` for each version command (what a step's host reports)."""
    found = {}
    for name, command in commands.items():
        path, version = ask_version(command)
        found[name] = {"path": path, "version": version}
    return found


def version_commands(plugin: Plugin, configured: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """The version command of each program ``plugin`` declares, through the host's configured
    command for it when it has one (``[hosts.NAME.programs]``: ``mpirun = ["/opt/mpi/bin/mpirun"]``
    is asked as ``/opt/mpi/bin/mpirun --version``)."""
    commands = {}
    for program in plugin.programs:
        if not program.version_command:
            continue
        base = list((configured or {}).get(program.name) or [program.version_command[0]])
        commands[program.name] = base + list(program.version_command[1:])
    return commands


def program_versions(plugin: Plugin, host: str,
                     on_host: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """For each program ``plugin`` declares: where it is and what its version command printed.

    On the local host the scheduler asks itself, once per process; on another host it is what
    a step there found (``on_host``, from the store's ``host_programs``), asked once per host."""
    versions: dict[str, dict[str, Any]] = {}
    commands = version_commands(plugin)
    for program in plugin.programs:
        if host == LOCAL_HOST:
            path, version = ask_version(commands[program.name]) if program.name in commands \
                else (program.find(), None)
            versions[program.name] = {"path": path, "version": version}
        elif on_host and program.name in on_host:
            found = on_host[program.name]
            versions[program.name] = {"path": found.get("path"), "version": found.get("version"), "host": host,
                                      "asked_at": found.get("asked_at")}
        else:
            versions[program.name] = {"path": None, "version": None, "host": host,
                                      "note": f"no step on host {host!r} reported it"}
    return versions
