"""How ``orch status`` and ``orch queue`` print the hosts the scheduler found unreachable."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from orchestrator.cli.output import echo, first_line, format_duration, style

if TYPE_CHECKING:  # the layer's records, imported by the commands' handlers
    from orchestrator.app.host_health import HostHealthInfo


def print_unreachable_hosts(hosts: Sequence[HostHealthInfo], *, err: bool = False) -> None:
    """One line per unreachable host: since when (and how long), and why; healthy hosts say nothing."""
    for health in hosts:
        if not health.unreachable:
            continue
        since = health.since if health.since.tzinfo else health.since.replace(tzinfo=UTC)
        lasted = format_duration((datetime.now(UTC) - since).total_seconds())
        echo(f"{style('host ' + health.host + ' unreachable', 'red', err=err)} since "
             f"{since.strftime('%Y-%m-%d %H:%M:%S UTC')} ({lasted}): {first_line(health.message)}", err=err)
