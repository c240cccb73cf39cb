"""The software a run used: Python, the key libraries, its protocol's plugin, and the versions
of the external programs the plugin declares (``relion_refine --version``), asked once per
host and scheduler process.

Versions are read from installed distributions (``importlib.metadata``), never by importing
the packages, so recording them costs milliseconds.
"""

from __future__ import annotations

import platform
import sys
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


#: (program name) -> (path, version) on the local host, asked once per scheduler process
_LOCAL_PROGRAMS: dict[str, tuple[str | None, str | None]] = {}


def program_versions(plugin: Plugin, host: str) -> dict[str, dict[str, str | None]]:
    """For each program ``plugin`` declares: where it is and what its version command printed.
    On the local host it is asked once per process; on other hosts the program is resolved
    where the step runs (its hosts file, its modules), which the record says instead."""
    versions: dict[str, dict[str, str | None]] = {}
    for program in plugin.programs:
        if host != LOCAL_HOST:
            versions[program.name] = {"path": None, "version": None, "note": f"resolved on host {host!r}"}
            continue
        if program.name not in _LOCAL_PROGRAMS:
            _LOCAL_PROGRAMS[program.name] = (program.find(), program.version())
        path, version = _LOCAL_PROGRAMS[program.name]
        versions[program.name] = {"path": path, "version": version}
    return versions
