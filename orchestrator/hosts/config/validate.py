"""Checks for hosts-file values, and the table reader that reports problems with their place.

Each check returns the converted value or raises ``ValueError`` with the reason; the reader
(:class:`Table`) turns that into ``FILE: host 'NAME': key 'a.b': reason``.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.hosts.config.units import parse_memory_mb, parse_period_s, parse_walltime_s

MISSING = object()
MAX_PERIOD_S = 366 * 86400
QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]*$")


class Table:
    """One TOML table being read: takes keys with checks, remembers problems and leftovers."""

    def __init__(self, data: Mapping[str, Any], file: Path, host: str | None, prefix: str,
                 problems: list[str]) -> None:
        self.data = dict(data)
        self.file, self.host, self.prefix, self.problems = file, host, prefix, problems

    def where(self, key: str) -> str:
        host = f"host {self.host!r}: " if self.host else ""
        return f"{self.file}: {host}key {self.prefix + key!r}"

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.where(key)}: {message}")

    def take(self, key: str, default: Any = MISSING, *, check: Callable[[Any], Any] | None = None,
             required: bool = False) -> Any:
        """Pop ``key``; run ``check`` (returns the converted value, raises ValueError)."""
        if key not in self.data:
            if required:
                self.problem(key, "is required")
            return None if default is MISSING else default
        value = self.data.pop(key)
        if check is None:
            return value
        try:
            return check(value)
        except (ValueError, TypeError, OverflowError) as exc:
            self.problem(key, str(exc))
            return None if default is MISSING else default

    def table(self, key: str) -> Table | None:
        value = self.data.pop(key, None)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(key, f"must be a table ([...] section), got {type(value).__name__}")
            return None
        return Table(value, self.file, self.host, f"{self.prefix}{key}.", self.problems)

    def finish(self, allowed: set[str], context: str = "") -> None:
        for key in self.data:
            hint = difflib.get_close_matches(key, sorted(allowed), n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            extra = f" {context}" if context else ""
            self.problem(key, f"unknown key{extra}{suggestion} (known: {', '.join(sorted(allowed))})")


# -- value checks: each returns the converted value or raises ValueError with the reason --

def one_line_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    if any(c in value for c in "\n\r\0"):
        raise ValueError(f"must be one line (no newline or NUL), got {value!r}")
    return value


def nonempty_str(value: Any) -> str:
    text = one_line_str(value)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def bool_value(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def int_value(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"must be an integer >= {minimum}, got {value!r}")
        return value
    return check


def lines(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"must be a list of strings, got {value!r}")
    return tuple(one_line_str(v) for v in value)


# Far beyond any node or queue limit, and within what every later conversion (a float of
# seconds, a timedelta, a C long) takes: a value past them is a typo, reported as such.
MAX_MEMORY_MB = 2**30  # 1 PiB
MAX_WALLTIME_S = 100 * 366 * 86400  # a century
_MAX_TEXT = 32  # characters of a size or wall time as people write them ("1-00:00:00", "256G")


def memory(value: Any) -> int:
    _short_text(value, "a size such as 16G")
    try:
        mb = parse_memory_mb(value)
    except OverflowError:  # "9" * 400 + "G": a float too large to round up
        raise ValueError(f"is too large for a memory size, got {value!r}") from None
    if mb > MAX_MEMORY_MB:
        raise ValueError(f"must be at most {MAX_MEMORY_MB} MB (1 PiB), got {value!r}")
    return mb


def walltime(value: Any) -> int:
    _short_text(value, "a wall time such as 04:00:00")
    seconds = parse_walltime_s(value)
    if seconds > MAX_WALLTIME_S:
        raise ValueError(f"must be at most {MAX_WALLTIME_S} seconds (a century), got {value!r}")
    return seconds


def period(value: Any) -> float:
    """A grace period or a limit (``30s``, ``3m``, ``00:03:00``, or seconds as a number), at most a year."""
    if isinstance(value, str):
        _short_text(value, "a period such as 3m")
    seconds = parse_period_s(value)
    if seconds > MAX_PERIOD_S:
        raise ValueError(f"must be at most {MAX_PERIOD_S} seconds (a year), got {value!r}")
    return seconds


def _short_text(value: Any, expected: str) -> None:
    """Refuse a 5,000-character value before a parser converts its digits (and quote it short)."""
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        raise ValueError(f"expected {expected}, got {value[:_MAX_TEXT]!r}... ({len(value)} characters)")


def format_value(fields: set[str]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = nonempty_str(value)
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        except ValueError as exc:
            raise ValueError(f"is not a valid format ({exc}): {text!r}") from None
        unknown = used - fields
        if unknown:
            raise ValueError(f"may only use the fields {{{'}, {'.join(sorted(fields))}}}; "
                             f"got {{{'}, {'.join(sorted(unknown))}}} in {text!r}")
        return text
    return check


def queue_name(value: Any) -> str:
    text = nonempty_str(value)
    if not QUEUE_NAME.match(text):
        raise ValueError(f"is not a valid queue name: {text!r}")
    return text


PROGRAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def program_name(value: Any) -> str:
    text = nonempty_str(value)
    if not PROGRAM_NAME.match(text):
        raise ValueError(f"is not a valid program name (letters, digits, '_', '.', '+', '-'): {text!r}")
    return text


def program_command(value: Any) -> tuple[str, ...]:
    """A program's command: a non-empty list of one-line strings, the first one not empty."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a non-empty list of strings (the command's words), got {value!r}")
    words = tuple(one_line_str(word) for word in value)
    if not words[0].strip():
        raise ValueError(f"must start with the program to run, got {value!r}")
    return words


def path_value(base: Path) -> Callable[[Any], Path]:
    def check(value: Any) -> Path:
        return expand_path(nonempty_str(value), base)
    return check


def expand_path(text: str, base: Path) -> Path:
    """``~`` and ``~user`` expanded, relative paths taken from ``base``; ValueError if no such user."""
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # pathlib's answer to ~someone who has no account here
        raise ValueError(f"cannot expand {text.split('/', 1)[0]!r}: no such user, in {text!r}") from None
    return path if path.is_absolute() else base / path


def is_file(path: Path) -> bool:
    """``Path.is_file``, but False for a name the system refuses (too long) instead of raising."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
