"""Installed plugins and their protocols: what is there, whether it can run, what params it takes.

Plugins are described from their entry points: loading one imports its protocol declarations,
never its numerical kernels (those are imported when a step runs). A plugin that fails to
load is a state to report, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.app.serialize import Record
from orchestrator.errors import NotFoundError
from orchestrator.objects.params import suggest
from orchestrator.plugins import Plugin, PluginLoadFailure, PluginRegistry, discover
from orchestrator.protocol.base import Protocol

STATE_OK = "ok"
STATE_MISSING = "missing_programs"
STATE_FAILED = "failed"


@dataclass(frozen=True)
class MissingInfo(Record):
    """A program (or other requirement) a plugin lacks, and how to get it."""

    name: str
    how_to_get: str
    reason: str


@dataclass(frozen=True)
class PluginInfo(Record):
    """A plugin entry point: ``state`` is ok, missing_programs (see ``missing``) or failed (``error``)."""

    name: str
    version: str | None
    protocol_count: int
    protocols: list[str]
    state: str
    missing: list[MissingInfo] = field(default_factory=list)
    error: str | None = None
    target: str | None = None

    @classmethod
    def of(cls, plugin: Plugin) -> PluginInfo:
        missing = [MissingInfo(m.name, m.how_to_get, m.reason) for m in plugin.check()]
        return cls(plugin.name, plugin.version, len(plugin.protocols), [proto.name for proto in plugin.protocols],
                   STATE_MISSING if missing else STATE_OK, missing)

    @classmethod
    def failed(cls, failure: PluginLoadFailure) -> PluginInfo:
        return cls(failure.entry_point, failure.version, 0, [], STATE_FAILED, error=failure.error,
                   target=failure.target)


@dataclass(frozen=True)
class ProtocolInfo(Record):
    """A protocol's form: its params (kind, default, condition, help), inputs and outputs."""

    name: str
    label: str
    help: str
    citations: list[str]
    params: list[dict[str, Any]]
    inputs: list[str]
    outputs: dict[str, str]

    @classmethod
    def of(cls, protocol: type[Protocol]) -> ProtocolInfo:
        info = protocol.describe()
        return cls(info["name"], info["label"], info["help"], list(info["citations"]), list(info["params"]),
                   list(info["inputs"]), dict(info["outputs"]))


@dataclass(frozen=True)
class PluginDetail(Record):
    """A plugin and (all, or the one asked for) of its protocols."""

    plugin: PluginInfo
    protocols: list[ProtocolInfo]
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin.to_dict(), "protocols": [p.to_dict() for p in self.protocols]}


def list_plugins(registry: PluginRegistry | None = None) -> list[PluginInfo]:
    """Every plugin entry point: the loaded plugins first, then those that failed to load."""
    registry = registry or discover()
    return ([PluginInfo.of(plugin) for plugin in registry.plugins.values()]
            + [PluginInfo.failed(failure) for failure in registry.failures])


def show_plugin(name: str, registry: PluginRegistry | None = None) -> PluginDetail:
    """A plugin with its protocols, or, for a protocol's name, its plugin with just that protocol.
    NotFoundError (with close matches) when neither exists."""
    registry = registry or discover()
    if name in registry.plugins:
        plugin = registry.plugins[name]
        return PluginDetail(PluginInfo.of(plugin), [ProtocolInfo.of(p) for p in plugin.protocols], plugin.description)
    if name in registry.protocols():
        plugin = registry.plugin_of(name)
        return PluginDetail(PluginInfo.of(plugin), [ProtocolInfo.of(registry.protocol(name))], plugin.description)
    for failure in registry.failures:
        if failure.entry_point == name:
            return PluginDetail(PluginInfo.failed(failure), [])
    known = list(registry.plugins) + list(registry.protocols())
    plugins = ", ".join(registry.plugins) or "none"
    raise NotFoundError(f"no plugin or protocol '{name}'{suggest(name, known)}; plugins: {plugins}")


def describe_protocol(name: str, registry: PluginRegistry | None = None) -> ProtocolInfo:
    """One protocol's form; NotFoundError names close matches and plugins that failed to load."""
    return ProtocolInfo.of((registry or discover()).protocol(name))
