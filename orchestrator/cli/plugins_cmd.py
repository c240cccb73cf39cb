"""``orch plugins``: which plugins are installed, whether they can run, what they offer.

``orch plugins [--json]`` lists every plugin entry point with its state: ``ok``, missing
programs (with how to get them), or failed to import (with the error). ``orch plugins show
NAME [--json]`` lists a plugin's protocols and their params; NAME may also be a protocol.
A broken plugin is a state to report, not a failure of the command: the exit code is 0.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from orchestrator.cli.output import echo, print_json, print_table, style

if TYPE_CHECKING:  # the layer is imported by the handler: building the parser loads no plugin
    from orchestrator.app.plugins import PluginInfo, ProtocolInfo


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


def list_plugins(args: argparse.Namespace) -> int:
    from orchestrator.app import plugins

    rows = plugins.list_plugins()
    if args.json:
        print_json({"plugins": rows})
        return 0
    print_table("Plugins", ["Plugin", "Version", "Protocols", "State"],
                [(row.name, row.version or "-", row.protocol_count, _state_text(row)) for row in rows])
    if not rows:
        echo("No plugins installed (entry point group 'orchestrator.plugins').")
    for row in rows:
        for missing in row.missing:
            echo(f"{row.name}: {missing.name} {missing.reason}; {missing.how_to_get}")
    return 0


def show_plugin(args: argparse.Namespace) -> int:
    from orchestrator.app import plugins

    detail = plugins.show_plugin(args.name)
    if args.json:
        print_json(detail)
        return 0
    plugin = detail.plugin
    if plugin.state == plugins.STATE_FAILED:
        echo(f"{style(plugin.name, 'bold')}: {_state_text(plugin)}")
        return 0
    echo(f"{style(plugin.name, 'bold')} {plugin.version}: {_state_text(plugin)}")
    if detail.description:
        echo(detail.description)
    for protocol in detail.protocols:
        _print_protocol(protocol)
    return 0


def _state_text(row: PluginInfo) -> str:
    if row.state == "failed":
        return f"{style('failed to import', 'red')} ({row.error})"
    if row.state == "missing_programs":
        return f"{style('missing programs', 'yellow')} ({', '.join(m.name for m in row.missing)})"
    return style("ok", "green")


def _print_protocol(protocol: ProtocolInfo) -> None:
    help_line = protocol.help.splitlines()[0] if protocol.help else ""
    outputs = ", ".join(f"{k}: {v}" for k, v in protocol.outputs.items()) or "none"
    rows = []
    for param in protocol.params:
        if param["required"]:
            default = "(required)"
        else:
            default = "-" if param["default"] is None else json.dumps(param["default"])
        kind = param["kind"] + (f" -> {param['type_name']}" if param.get("type_name") else "")
        rows.append((param["name"], kind, default, param["condition"] or "", param["help"]))
    print_table(f"{protocol.name} - {protocol.label}", ["Param", "Kind", "Default", "Condition", "Help"], rows,
                caption=f"{help_line}  outputs: {outputs}")
