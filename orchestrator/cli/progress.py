"""Live progress for the commands that wait: ``orch run --wait`` and ``orch transfer status --watch``.

Drawn with rich, which only these commands import (see :mod:`orchestrator.cli.output`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from orchestrator.app.runs import RunProgress
from orchestrator.app.transfers import TransferReport
from orchestrator.cli.output import human_bytes
from orchestrator.transfer.status import TransferCall

WATCH_INTERVAL_S = 1.0


class RunBars:
    """One bar per run on stderr: its finished steps out of all its steps, and the others' states."""

    def __init__(self, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
            console=Console(stderr=True), disable=not enabled, transient=False)
        self.tasks: dict[int, TaskID] = {}

    def __enter__(self) -> RunBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, runs: Sequence[RunProgress]) -> None:
        for item in runs:
            counts, run = item.steps, item.run
            total = counts.total
            others = ", ".join(f"{count} {state}" for state, count in counts.to_dict().items()
                               if state not in ("total", "finished") and count)
            detail = run.state + (f" ({others})" if others else "")
            if run.id not in self.tasks:
                self.tasks[run.id] = self.progress.add_task(escape(run.name), total=total or None, detail=detail)
            self.progress.update(self.tasks[run.id], completed=counts.finished, total=total or None, detail=detail)


def transfer_bars(active: Sequence[TransferCall], label: Callable[[TransferCall], str]) -> Progress:
    """A bar per staging call: bytes moved of all, speed, files, time left, the file moving now."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        TextColumn("{task.fields[speed]}"), TextColumn("{task.fields[files]}"),
                        TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[now]}"), auto_refresh=False)
    for call in active:
        eta = "stalled" if call.stalled else (f"{call.eta_s:.0f} s left" if call.eta_s is not None else "")
        moving = call.moving[0].rsplit("/", 1)[-1] if call.moving else ""
        progress.add_task(escape(label(call)), total=max(call.bytes_total, 1), completed=call.bytes_done,
                          speed=f"{human_bytes(call.speed_bps)}/s", files=f"{call.files_done}/{call.files_total} files",
                          eta=eta, now=escape(moving))
    return progress


def show_transfers(report: TransferReport, label: Callable[[TransferCall], str]) -> None:
    """The active calls' bars, once."""
    Console().print(transfer_bars(report.active, label))


def watch_transfers(report: TransferReport, read: Callable[[], TransferReport],
                    label: Callable[[TransferCall], str]) -> TransferReport:
    """Redraw the bars every second until nothing moves (or every call has stalled); the last report."""
    with Live(transfer_bars(report.active, label), refresh_per_second=2) as live:
        while report.moving:
            time.sleep(WATCH_INTERVAL_S)
            report = read()
            live.update(transfer_bars(report.active, label))
    return report
