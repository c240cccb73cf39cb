"""Plugin discovery through the ``orchestrator.plugins`` entry point group.

A plugin is a pip-installable package whose ``pyproject.toml`` declares::

    [project.entry-points."orchestrator.plugins"]
    myplugin = "my_package:plugin"

where ``my_package.plugin`` is a :class:`Plugin`. :func:`discover` loads every entry point;
one that fails to import (or gives something other than a Plugin, or clashes with another
plugin) is recorded with its error in ``PluginRegistry.failures`` and the others still
load, so one broken plugin never takes the whole ``orch`` command down.

Loading an entry point imports the plugin's protocol declarations only: ``orch plugins`` and
``orch run`` describe and validate runs from them, and commands that only read a project never
discover plugins at all. So a plugin keeps its numerical kernels (numpy/scipy code, EM format
readers) out of that import path: its protocols import their step modules inside ``steps()``,
when a run is planned (``tests/unit/test_app_plugins.py`` checks the shipped plugins).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

from orchestrator.errors import NotFoundError
from orchestrator.objects.params import suggest
from orchestrator.protocol.base import Protocol

ENTRY_POINT_GROUP = "orchestrator.plugins"


@dataclass(frozen=True)
class ExternalProgram:
    """A program a plugin runs (e.g. ``relion_refine``), and how a user gets it."""

    name: str
    how_to_get: str
    version_command: Sequence[str] | None = None

    def find(self) -> str | None:
        """Absolute path of the program on PATH, or None."""
        return shutil.which(self.name)

    def version(self, timeout_s: float = 10.0) -> str | None:
        """First line printed by ``version_command``; None when there is none or it fails."""
        if not self.version_command or self.find() is None:
            return None
        try:
            done = subprocess.run(
                list(self.version_command), capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        lines = (done.stdout or done.stderr).strip().splitlines()
        return lines[0] if lines else None


@dataclass(frozen=True)
class MissingProgram:
    """A requirement of a plugin that is not met, with what to do about it."""

    name: str
    how_to_get: str
    reason: str = "not found on PATH"


@dataclass
class Plugin:
    """What a plugin's entry point loads: its protocols and what they need.

    ``check`` is an optional extra test (a licence file, a CUDA version...) returning the
    problems it finds; the programs listed in ``programs`` are checked on PATH anyway.
    """

    name: str
    version: str
    protocols: list[type[Protocol]] = field(default_factory=list)
    citations: list[str] = field(default_factory=list)
    programs: list[ExternalProgram] = field(default_factory=list)
    check_extra: Callable[[], list[MissingProgram]] | None = None
    description: str = ""

    def check(self) -> list[MissingProgram]:
        """The plugin's unmet requirements (empty when it is ready to run)."""
        missing = [
            MissingProgram(program.name, program.how_to_get)
            for program in self.programs
            if program.find() is None
        ]
        if self.check_extra is not None:
            try:
                missing.extend(self.check_extra())
            except Exception as exc:  # noqa: BLE001 - third-party code: report, do not crash `orch plugins`
                missing.append(MissingProgram(f"{self.name} check", "", f"check failed: {exc!r}"))
        return missing


@dataclass(frozen=True)
class PluginLoadFailure:
    """An entry point that did not give a usable plugin, and why."""

    entry_point: str
    target: str
    error: str
    distribution: str | None = None
    version: str | None = None


@dataclass
class PluginRegistry:
    """The loaded plugins (by name, in discovery order) and the entry points that failed."""

    plugins: dict[str, Plugin] = field(default_factory=dict)
    failures: list[PluginLoadFailure] = field(default_factory=list)

    def protocols(self) -> dict[str, type[Protocol]]:
        """Every protocol class of every loaded plugin, by protocol name."""
        return {proto.name: proto for plugin in self.plugins.values() for proto in plugin.protocols}

    def protocol(self, name: str) -> type[Protocol]:
        """The protocol class called ``name``; NotFoundError names close matches otherwise."""
        protocols = self.protocols()
        if name in protocols:
            return protocols[name]
        hint = suggest(name, list(protocols))
        failed = f"; plugins that failed to load: {', '.join(f.entry_point for f in self.failures)}"
        raise NotFoundError(
            f"no protocol '{name}'{hint}; installed: {', '.join(sorted(protocols)) or 'none'}"
            + (failed if self.failures else "")
        )

    def plugin(self, name: str) -> Plugin:
        """The plugin called ``name``; NotFoundError names close matches otherwise."""
        if name in self.plugins:
            return self.plugins[name]
        hint = suggest(name, list(self.plugins))
        raise NotFoundError(f"no plugin '{name}'{hint}; installed: {', '.join(self.plugins) or 'none'}")

    def plugin_of(self, protocol_name: str) -> Plugin:
        """The plugin that provides a protocol."""
        self.protocol(protocol_name)
        return next(p for p in self.plugins.values() if any(c.name == protocol_name for c in p.protocols))

    def add(self, plugin: Plugin, entry_point: EntryPoint) -> None:
        """Register a loaded plugin, or record a failure if it clashes with one already there."""
        problem = _plugin_problem(plugin, self)
        if problem is None:
            self.plugins[plugin.name] = plugin
        else:
            self.failures.append(_failure(entry_point, problem))


def discover(group: str = ENTRY_POINT_GROUP, *, points: Iterable[EntryPoint] | None = None) -> PluginRegistry:
    """Load every plugin entry point of ``group`` (or the given ``points``, for tests)."""
    registry = PluginRegistry()
    for entry_point in points if points is not None else entry_points(group=group):
        try:
            loaded = entry_point.load()
        except Exception as exc:  # noqa: BLE001 - a plugin may raise anything on import; record it
            registry.failures.append(_failure(entry_point, f"{type(exc).__name__}: {exc}"))
            continue
        if not isinstance(loaded, Plugin):
            registry.failures.append(
                _failure(entry_point, f"entry point gave {type(loaded).__name__}, expected a Plugin")
            )
            continue
        registry.add(loaded, entry_point)
    return registry


def _plugin_problem(plugin: Plugin, registry: PluginRegistry) -> str | None:
    if plugin.name in registry.plugins:
        return f"a plugin named '{plugin.name}' is already loaded"
    known = registry.protocols()
    own: set[str] = set()
    for proto in plugin.protocols:
        if not (isinstance(proto, type) and issubclass(proto, Protocol)) or not proto.name:
            return f"plugin '{plugin.name}': {proto!r} is not a named Protocol subclass"
        if proto.name in own:
            return f"plugin '{plugin.name}': protocol '{proto.name}' is listed twice"
        own.add(proto.name)
        if proto.name in known:
            owner = registry.plugin_of(proto.name).name
            return f"plugin '{plugin.name}': protocol '{proto.name}' is already provided by plugin '{owner}'"
    return None


def _failure(entry_point: EntryPoint, error: str) -> PluginLoadFailure:
    dist = getattr(entry_point, "dist", None)
    return PluginLoadFailure(
        entry_point=entry_point.name,
        target=entry_point.value,
        error=error,
        distribution=dist.name if dist is not None else None,
        version=dist.version if dist is not None else None,
    )
