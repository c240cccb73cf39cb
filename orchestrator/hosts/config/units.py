"""Memory sizes and wall times as people write them in hosts files, and as queues want them."""

from __future__ import annotations

import math
import re

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_FACTOR_MB = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024**2, "p": 1024**3}
_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d{2}))?(?::(\d{2}))?$")


def parse_memory_mb(value: int | str) -> int:
    """``4000`` (MB), ``"4000M"``, ``"16G"``, ``"16GB"``, ``"1.5T"`` -> MB (binary units)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 16G, got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"expected a positive size in MB, got {value}")
        return value
    match = _MEMORY.match(str(value))
    if not match:
        raise ValueError(f"expected a size such as 500M, 16G or 1T, got {value!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    mb = math.ceil(number * _FACTOR_MB[unit])
    if mb <= 0:
        raise ValueError(f"expected a positive size, got {value!r}")
    return mb


def parse_walltime_s(value: int | str) -> int:
    """``3600`` (an integer: seconds), ``"1:00:00"``, ``"2-00:00:00"``, ``"2-12"`` -> seconds.

    Without a day part a string must be ``HH:MM:SS``: ``"90:00"`` means minutes to some queue
    systems and hours to others, so it is refused rather than guessed.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a wall time such as 04:00:00, got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"expected a positive number of seconds, got {value}")
        return value
    match = _WALLTIME.match(str(value).strip())
    if not match or (match.group(1) is None and match.group(4) is None):
        raise ValueError(f"expected a wall time such as 04:00:00 or 2-00:00:00 (or seconds as a number), "
                         f"got {value!r}")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ValueError(f"expected a positive wall time, got {value!r}")
    return total


_PERIOD = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$", re.IGNORECASE)
_PERIOD_FACTOR = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_period_s(value: int | float | str) -> float:
    """A grace period or a limit: ``30`` or ``2.5`` (seconds), ``"30s"``, ``"3m"``, ``"2h"``,
    ``"1d"``, or a wall time (``"00:03:00"``) -> seconds, more than zero."""
    if isinstance(value, bool):
        raise ValueError(f"expected a period such as 30s, 3m or 00:03:00, got {value!r}")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an integer of 400 digits
            raise ValueError(f"expected a period of a sensible length, got {str(value)[:40]}...") from None
    else:
        match = _PERIOD.match(str(value).strip())
        if match:
            seconds = float(match.group(1)) * _PERIOD_FACTOR[(match.group(2) or "").lower()]
        elif ":" in str(value):
            seconds = float(parse_walltime_s(str(value)))
        else:
            raise ValueError(f"expected a period such as 30s, 3m or 00:03:00 (or seconds as a number), got {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"expected a positive period, got {value!r}")
    return seconds


def format_hms(seconds: int) -> str:
    """Seconds -> ``HH:MM:SS`` (hours may exceed 24), as most queue systems take wall times."""
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def parse_duration_s(text: str) -> float | None:
    """Elapsed times printed by queues: ``5:03``, ``1:02:03``, ``2-01:02:03``, ``00:00.010``."""
    text = text.strip()
    if not text or text in {"INVALID", "UNLIMITED", "N/A", "NOT_SET"}:
        return None
    days = 0
    if "-" in text:
        day_part, text = text.split("-", 1)
        if not day_part.isdigit():
            return None
        days = int(day_part)
    parts = text.split(":")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        return None
    seconds = 0.0
    for number in numbers:
        seconds = seconds * 60 + number
    return days * 86400 + seconds


def format_memory_mb(mb: int) -> str:
    """MB -> the shortest exact unit (``16G``, ``500M``) for display and dask-jobqueue."""
    if mb % (1024 * 1024) == 0:
        return f"{mb // (1024 * 1024)}T"
    if mb % 1024 == 0:
        return f"{mb // 1024}G"
    return f"{mb}M"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size_mb(text: str, default_unit: str = "k") -> float | None:
    """Sizes printed by queues (``4K``, ``1.5G``, ``12272kb``, ``6.426MB``, ``0.000B``) -> MB.

    A bare number is in ``default_unit`` (most queues print KiB); a bare ``B`` means bytes.
    None when the text is empty or not a size.
    """
    match = _SIZE.match(text or "")
    if not match:
        return None
    number, unit, suffix = float(match.group(1)), match.group(2).lower(), match.group(3)
    if not unit:
        if suffix:
            return number / 2**20
        unit = default_unit.lower()
    return number * _FACTOR_MB[unit]
