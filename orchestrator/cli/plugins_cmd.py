"""``orch plugins``: which plugins are installed, whether they can run, what they offer.

``orch plugins [--json]`` lists every plugin entry point with its state: ``ok``, missing
programs (with how to get them), or failed to import (with the error). ``orch plugins show
NAME [--json]`` lists a plugin's protocols and their params; NAME may also be a protocol.
A broken plugin is a state to report, not a failure of the command: the exit code is 0.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator.errors import NotFoundError
from orchestrator.objects.params import suggest
from orchestrator.plugins import Plugin, PluginLoadFailure, PluginRegistry, discover
from orchestrator.protocol.base import Protocol

STATE_OK = "ok"
STATE_MISSING = "missing_programs"
STATE_FAILED = "failed"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plugins",
        help="list installed plugins and their state",
        description="List installed plugins: version, protocols, and whether they can run.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=list_plugins)
    actions = parser.add_subparsers(dest="plugins_action", metavar="ACTION")
    show = actions.add_parser("show", help="show a plugin's (or one protocol's) protocols and params")
    show.add_argument("name", metavar="NAME", help="plugin name, or a protocol name such as testkit.sleep")
    # SUPPRESS keeps `orch plugins --json show X` working: the sub-parser leaves args.json alone.
    show.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    show.set_defaults(handler=show_plugin)


def plugin_rows(registry: PluginRegistry) -> list[dict[str, Any]]:
    """One JSON-ready row per entry point: loaded plugins first, then failures."""
    rows = [_plugin_row(plugin) for plugin in registry.plugins.values()]
    rows.extend(_failure_row(failure) for failure in registry.failures)
    return rows


def list_plugins(args: argparse.Namespace) -> int:
    rows = plugin_rows(discover())
    if args.json:
        print(json.dumps({"plugins": rows}, indent=2))
        return 0
    table = Table(title="Plugins")
    for column in ("Plugin", "Version", "Protocols", "State"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["version"] or "-", str(row["protocol_count"]), _state_text(row))
    console = Console(soft_wrap=True)
    console.print(table)
    if not rows:
        console.print("No plugins installed (entry point group 'orchestrator.plugins').")
    for row in rows:
        for missing in row["missing"]:
            console.print(f"{row['name']}: {missing['name']} {missing['reason']}; {missing['how_to_get']}")
    return 0


def show_plugin(args: argparse.Namespace) -> int:
    registry = discover()
    plugin, protocols = _select(registry, args.name)
    if plugin is None:
        failure = next(f for f in registry.failures if f.entry_point == args.name)
        row = _failure_row(failure)
        if args.json:
            print(json.dumps({"plugin": row, "protocols": []}, indent=2))
        else:
            Console(soft_wrap=True).print(f"[bold]{failure.entry_point}[/]: {_state_text(row)}")
        return 0
    described = [proto.describe() for proto in protocols]
    if args.json:
        print(json.dumps({"plugin": _plugin_row(plugin), "protocols": described}, indent=2))
        return 0
    console = Console(soft_wrap=True)
    row = _plugin_row(plugin)
    console.print(f"[bold]{plugin.name}[/] {plugin.version}: {_state_text(row)}")
    if plugin.description:
        console.print(plugin.description)
    for item in described:
        console.print(_protocol_table(item))
    return 0


def _select(registry: PluginRegistry, name: str) -> tuple[Plugin | None, list[type[Protocol]]]:
    """A plugin and all its protocols, or the plugin of one protocol and just that protocol."""
    if name in registry.plugins:
        plugin = registry.plugins[name]
        return plugin, list(plugin.protocols)
    if name in registry.protocols():
        return registry.plugin_of(name), [registry.protocol(name)]
    if any(failure.entry_point == name for failure in registry.failures):
        return None, []
    known = list(registry.plugins) + list(registry.protocols())
    plugins = ", ".join(registry.plugins) or "none"
    raise NotFoundError(f"no plugin or protocol '{name}'{suggest(name, known)}; plugins: {plugins}")


def _plugin_row(plugin: Plugin) -> dict[str, Any]:
    missing = plugin.check()
    return {
        "name": plugin.name,
        "version": plugin.version,
        "protocol_count": len(plugin.protocols),
        "protocols": [proto.name for proto in plugin.protocols],
        "state": STATE_MISSING if missing else STATE_OK,
        "missing": [{"name": m.name, "how_to_get": m.how_to_get, "reason": m.reason} for m in missing],
        "error": None,
    }


def _failure_row(failure: PluginLoadFailure) -> dict[str, Any]:
    return {
        "name": failure.entry_point,
        "version": failure.version,
        "protocol_count": 0,
        "protocols": [],
        "state": STATE_FAILED,
        "missing": [],
        "error": failure.error,
        "target": failure.target,
    }


def _state_text(row: dict[str, Any]) -> str:
    if row["state"] == STATE_FAILED:
        return f"[red]failed to import[/] ({row['error']})"
    if row["state"] == STATE_MISSING:
        names = ", ".join(m["name"] for m in row["missing"])
        return f"[yellow]missing programs[/] ({names})"
    return "[green]ok[/]"


def _protocol_table(item: dict[str, Any]) -> Table:
    help_line = item["help"].splitlines()[0] if item["help"] else ""
    outputs = ", ".join(f"{k}: {v}" for k, v in item["outputs"].items()) or "none"
    table = Table(title=f"{item['name']} - {item['label']}", caption=f"{help_line}  outputs: {outputs}")
    for column in ("Param", "Kind", "Default", "Condition", "Help"):
        table.add_column(column)
    for param in item["params"]:
        if param["required"]:
            default = "(required)"
        else:
            default = "-" if param["default"] is None else json.dumps(param["default"])
        kind = param["kind"] + (f" -> {param['type_name']}" if param.get("type_name") else "")
        table.add_row(param["name"], kind, default, param["condition"] or "", param["help"])
    return table
