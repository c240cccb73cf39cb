"""Reading Scipion's param values and converting their units to ours.

Scipion writes typed JSON values in an export (``300.0``, ``true``, an enum as its index)
but strings in a template or a hand-edited file (``"300"``, ``"True"``); the readers here
take both. Each converter says in its docstring which Scipion code it mirrors, because a
unit is only right if it matches what Scipion hands to the program (e.g. RELION's
``--offset_step`` is Scipion's value times ``2 x oversampling``, not the value itself).
A value that cannot be read raises :class:`ConversionProblem`; the converter turns it into
a note and the run keeps our default.
"""

from __future__ import annotations

import math
import posixpath
from typing import Any

ANGSTROM_PER_MICRON = 1e4


class ConversionProblem(ValueError):
    """A Scipion value that a conversion cannot read; the message says what was expected."""


def _shown(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:
        return "an integer of thousands of digits"
    return text if len(text) <= 40 else text[:40] + "..."


def number(value: Any) -> float | None:
    """A finite number from ``1.5``, ``2`` or ``"1.5"``; None when unset (null or empty)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ConversionProblem(f"expected a number, got {_shown(value)}")
    try:
        result = float(value.strip()[:100]) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConversionProblem(f"expected a number, got {_shown(value)}") from None
    if not math.isfinite(result):
        raise ConversionProblem(f"expected a finite number, got {_shown(value)}")
    return result


def integer(value: Any) -> int | None:
    """An integer from ``3``, ``3.0`` or ``"3"``; None when unset."""
    result = number(value)
    if result is None:
        return None
    if not result.is_integer() or abs(result) >= 2**63:
        raise ConversionProblem(f"expected an integer, got {_shown(value)}")
    return int(result)


def flag(value: Any) -> bool | None:
    """A boolean from ``true``, ``1`` or ``"True"`` (Scipion's Boolean.set takes these); None when unset."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ConversionProblem(f"expected true or false, got {_shown(value)}")


def text(value: Any) -> str | None:
    """A string; None when unset. Numbers are written back as text (a template may hold "c1" or 1)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ConversionProblem(f"expected text, got {_shown(value)}")


def choice(value: Any, choices: tuple[str, ...]) -> int | None:
    """An EnumParam's index (what Scipion stores); the choice's own text is taken too."""
    if isinstance(value, str) and value.strip() in choices:
        return choices.index(value.strip())
    index = integer(value)
    if index is not None and not 0 <= index < len(choices):
        raise ConversionProblem(f"expected a choice from 0 to {len(choices) - 1} "
                                f"({', '.join(choices)}), got {_shown(value)}")
    return index


def positive_or_none(value: Any) -> float | None:
    """Scipion's ``-1`` (or 0) for "automatic" as None, so that our own default applies."""
    result = number(value)
    return result if result is not None and result > 0 else None


def files_pattern(folder: Any, pattern: Any) -> str | None:
    """``ProtImportFiles.getPattern``: the folder joined with the pattern, or the folder alone."""
    folder_text, pattern_text = (text(folder) or "").strip(), (text(pattern) or "").strip()
    if not folder_text and not pattern_text:
        return None
    return posixpath.join(folder_text, pattern_text) if pattern_text else folder_text


def scanner_pixel_size(scanned_um: Any, magnification: Any) -> float | None:
    """Pixel size in Å from a scanned pixel size in µm/px and the magnification.

    ``samplingRateMode == 1`` of Scipion's imports (``Acquisition``): Å/px = µm/px x 10^4 / M.
    """
    scanned, mag = number(scanned_um), number(magnification)
    if scanned is None or mag is None:
        return None
    if mag <= 0:
        raise ConversionProblem(f"magnification must be > 0, got {_shown(magnification)}")
    return scanned * ANGSTROM_PER_MICRON / mag


def microns_to_angstrom(value: Any) -> float | None:
    """µm to Å (Xmipp's CTF defocus range, ``ProtCTFMicrographs._defineCtfParamsDict``: x 1e4)."""
    result = number(value)
    return None if result is None else result * ANGSTROM_PER_MICRON


def relion_sampling_factor(oversampling: Any) -> float:
    """``ProtRelionBase._getSamplingFactor``: Scipion's RELION forms ask for the *oversampled*
    steps and pass ``step x 2 x oversampling`` to relion_refine (1 when oversampling is 0)."""
    over = integer(oversampling)
    over = 1 if over is None else over
    return 1.0 if over == 0 else 2.0 * over


def gpu_count(do_gpu: Any, gpus_to_use: Any) -> int | None:
    """How many GPUs a RELION run of Scipion used: the devices of ``gpusToUse`` ("0,1:2" -> 3),
    1 when GPU use is on with no list (RELION then takes what it finds), 0 when it is off."""
    use = flag(do_gpu)
    if use is None:
        return None
    if not use:
        return 0
    devices = {part.strip() for group in (text(gpus_to_use) or "").strip().strip('"').split(":")
               for part in group.split(",") if part.strip()}
    return max(len(devices), 1)


def bin_factor(box: Any, rescaled: Any) -> int | None:
    """Fourier binning from RELION extraction's box and re-scaled box (``--scale``), when integral."""
    full, small = integer(box), integer(rescaled)
    if full is None or small is None:
        return None
    if small <= 0 or full % small:
        raise ConversionProblem(f"re-scaling a {full} px box to {small} px is no integer binning; "
                                "emtools.extract bins by whole factors")
    return full // small


def times(value: Any, factor: float) -> float | None:
    """A number scaled by ``factor``; None when unset."""
    read = number(value)
    return None if read is None else read * factor


def middle(low: Any, high: Any) -> float | None:
    """The middle of a range (RELION LoG picking's min and max diameter)."""
    a, b = number(low), number(high)
    return None if a is None or b is None else (a + b) / 2


def positive_int(value: Any) -> int | None:
    """An integer, or None for Scipion's -1 / 0 "automatic"."""
    read = integer(value)
    return read if read is not None and read > 0 else None


def symmetry(value: Any) -> str | None:
    """A symmetry group: Scipion writes "c1", "d7"; RELION (and our pattern) read them upper-case."""
    read = text(value)
    return read.strip().upper() if read and read.strip() else None
