"""FSC curves in the XML that EMDB's deposition system (OneDep) accepts, and back.

The format, as EMDB reads it and as Scipion's and cryoSPARC's exporters write it::

    <fsc title="..." xaxis="Resolution (A-1)" yaxis="Correlation Coefficient">
      <coordinate><x>0.0125</x><y>0.998</y></coordinate>
      ...
    </fsc>

``x`` is the spatial frequency in 1/Å (not the resolution in Å, whatever the axis label
says), ``y`` the correlation of that shell. :func:`resolution_at` reads the resolution off a
curve with the rule our FSC kernels use, so the file can be checked against the number we report.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.export.errors import ExportError

X_AXIS = "Resolution (A-1)"
Y_AXIS = "Correlation Coefficient"


@dataclass(frozen=True)
class FscCurve:
    """Correlation per shell, with the shells' spatial frequencies in 1/Å (ascending)."""

    frequency: tuple[float, ...]
    fsc: tuple[float, ...]

    @classmethod
    def of(cls, frequency: Sequence[float], fsc: Sequence[float], source: str) -> FscCurve:
        """A checked curve: as many finite values as frequencies, frequencies rising; ``source``
        (a file, a run) is named in the error otherwise."""
        freq = tuple(float(f) for f in frequency)
        corr = tuple(float(c) for c in fsc)
        if len(freq) != len(corr) or len(freq) < 2:
            raise ExportError(f"{source}: an FSC curve needs as many values as frequencies, at least 2; "
                              f"got {len(freq)} frequencies and {len(corr)} values")
        bad = [i for i, value in enumerate(freq + corr) if not math.isfinite(value)]
        if bad:
            raise ExportError(f"{source}: the FSC curve holds NaN or infinite values")
        if any(b <= a for a, b in zip(freq, freq[1:], strict=False)):
            raise ExportError(f"{source}: the FSC curve's frequencies do not rise shell by shell")
        return cls(freq, corr)


def to_xml(curve: FscCurve, title: str) -> str:
    """The curve as EMDB's FSC XML document."""
    root = ET.Element("fsc", {"title": title, "xaxis": X_AXIS, "yaxis": Y_AXIS})
    for x, y in zip(curve.frequency, curve.fsc, strict=True):
        point = ET.SubElement(root, "coordinate")
        ET.SubElement(point, "x").text = f"{x:.6f}"
        ET.SubElement(point, "y").text = f"{y:.6f}"
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def read_xml(path: Path) -> tuple[str, FscCurve]:
    """(title, curve) of an FSC XML file; ExportError naming the file when it is not one."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ExportError(f"{path}: not a readable XML file: {exc}") from None
    if root.tag != "fsc":
        raise ExportError(f"{path}: the root element is <{root.tag}>, not <fsc>")
    xs, ys = [], []
    for number, point in enumerate(root.findall("coordinate"), 1):
        x, y = point.findtext("x"), point.findtext("y")
        try:
            xs.append(float(x or ""))
            ys.append(float(y or ""))
        except ValueError:
            raise ExportError(f"{path}: coordinate {number} has no numeric <x> and <y> ({x!r}, {y!r})") from None
    return root.get("title", ""), FscCurve.of(xs, ys, str(path))


def crossing_shells(curve: FscCurve, threshold: float = 0.143) -> tuple[float, float] | None:
    """The resolutions (Å) of the last shell above ``threshold`` and the first below, or None
    when the curve never falls below it: a program that does not interpolate reports one of them."""
    for i in range(1, len(curve.fsc)):
        if curve.fsc[i] < threshold:
            return 1.0 / max(curve.frequency[i - 1], 1e-12), 1.0 / curve.frequency[i]
    return None


def resolution_at(curve: FscCurve, threshold: float = 0.143) -> float:
    """Resolution (Å) where the curve first falls below ``threshold`` after its first shell.

    Linear between the last shell above and the first below (in frequency, which is linear in
    the shell index), as RELION, cryoSPARC and our kernels report it; Nyquist (the last
    frequency) when the curve never falls below."""
    freq, corr = curve.frequency, curve.fsc
    for i in range(1, len(corr)):
        if corr[i] < threshold:
            f0, f1, c0, c1 = freq[i - 1], freq[i], corr[i - 1], corr[i]
            crossing = f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0)
            return 1.0 / max(crossing, 1e-12)
    return 1.0 / freq[-1]
