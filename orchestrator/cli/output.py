"""How ``orch`` prints: tables and lines for people, JSON for scripts, durations and sizes.

Tables are drawn here, in plain text with the box characters people know from rich, rather
than by rich itself: rich takes about 0.4 s to lay out the 1,000 rows of a large project's
``orch status``, and importing it costs every command its start-up time. On a terminal, text
may be styled (bold, colours; ``NO_COLOR`` turns that off) and a table too wide for the
window has its widest columns cut with "…"; into a pipe or a file, everything is printed
whole. Progress bars (:mod:`orchestrator.cli.progress`) still use rich, loaded only by the
commands that draw them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Sequence
from typing import IO, Any

from orchestrator.app.serialize import jsonable

_STYLES = {"bold": "1", "dim": "2", "italic": "3", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
_MIN_CUT_WIDTH = 8
_ELLIPSIS = "…"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _stream(err: bool) -> IO[str]:
    return sys.stderr if err else sys.stdout  # looked up per call: tests and pipes swap them


def is_terminal(err: bool = False) -> bool:
    stream = _stream(err)
    return bool(getattr(stream, "isatty", lambda: False)())


def _colour(err: bool) -> bool:
    return is_terminal(err) and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def style(text: str, *styles: str, err: bool = False) -> str:
    """``text`` in the given styles (``bold``, ``red``, ...) when it goes to a terminal; else as is."""
    if not styles or not _colour(err):
        return text
    codes = ";".join(_STYLES[name] for name in styles)
    return f"\x1b[{codes}m{text}\x1b[0m"


def echo(text: str = "", *, err: bool = False) -> None:
    """One line (or several) to stdout, or to stderr with ``err``."""
    stream = _stream(err)
    stream.write(text + "\n")
    stream.flush()


def print_json(data: Any) -> None:
    """``data`` (records, lists or dicts of them, times, paths) as indented JSON on stdout."""
    sys.stdout.write(json.dumps(jsonable(data), indent=2, default=str) + "\n")


def add_json_flag(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


# ---------------------------------------------------------------------- tables
def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _width(text: str) -> int:
    """How many columns ``text`` takes on screen (styles take none)."""
    return len(_ANSI.sub("", text))


def _pad(text: str, width: int) -> str:
    """``text`` filling ``width`` columns: padded, or cut with "…" (its styles dropped then)."""
    shown = _width(text)
    if shown <= width:
        return text + " " * (width - shown)
    plain = _ANSI.sub("", text)
    return plain[:max(width - 1, 0)] + _ELLIPSIS


def _fit(widths: list[int], headers: Sequence[str], available: int) -> list[int]:
    """Narrow the widest columns (never below their header or a few characters) to fit ``available``."""
    widths = list(widths)
    floors = [min(width, max(len(header), _MIN_CUT_WIDTH)) for width, header in zip(widths, headers, strict=True)]
    excess = sum(widths) + 3 * len(widths) + 1 - available
    while excess > 0:
        cuttable = [i for i, width in enumerate(widths) if width > floors[i]]
        if not cuttable:
            break
        widest = max(cuttable, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return widths


def table_lines(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None) -> list[str]:
    """A table in box characters: heavy lines around the header, light ones around the rows.
    A cell may hold several lines; with ``width``, the widest columns are cut to fit it."""
    head = [_text(header) for header in headers]
    body = [[_text(value).splitlines() or [""] for value in row] for row in rows]
    widths = [max([_width(head[i])] + [_width(line) for row in body for line in row[i]]) for i in range(len(head))]
    if width is not None:
        widths = _fit(widths, head, width)

    def rule(left: str, fill: str, middle: str, right: str) -> str:
        return left + middle.join(fill * (w + 2) for w in widths) + right

    def line(cells: Sequence[str], bar: str) -> str:
        return bar + bar.join(f" {_pad(cell, w)} " for cell, w in zip(cells, widths, strict=True)) + bar

    lines = [rule("┏", "━", "┳", "┓"), line(head, "┃"), rule("┡", "━", "╇", "┩")]
    for row in body:
        for index in range(max(len(cell) for cell in row)):
            lines.append(line([cell[index] if index < len(cell) else "" for cell in row], "│"))
    lines.append(rule("└", "─", "┴", "┘"))
    return lines


def print_table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
                caption: str | None = None) -> None:
    """A titled table on stdout, fitted to the terminal's width when stdout is one."""
    width = shutil.get_terminal_size().columns if is_terminal() else None
    lines = table_lines(headers, rows, width)
    if title:
        lines.insert(0, style(title, "italic"))
    if caption:
        lines.append(style(caption, "dim"))
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------- values
def format_duration(seconds: float | None) -> str:
    """``0.12s``, ``12.3s``, ``2m05s``, ``1h02m``; empty when there is none."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def human_bytes(count: float) -> str:
    """``512 B``, ``1.5 KiB`` ... ``2.0 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def first_line(text: str | None) -> str:
    """The first non-blank line of a message (an error's traceback follows it)."""
    return text.strip().splitlines()[0] if text and text.strip() else ""


def listing(names: Sequence[str], limit: int = 10) -> str:
    """``a, b, c`` or ``a, b, ... and 7 more``."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
