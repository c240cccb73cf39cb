"""Plots a user would rather look at than read, drawn with matplotlib (Agg) as SVG.

FSC curves with the 0.143 line and the resolution, the CTF fit of a micrograph in 1D,
histograms (defocus, CTF resolution, particles per micrograph), the angular distribution of
refined particles, and the duration and peak memory of a run's steps. Each function takes
plain arrays and returns the SVG's bytes; what to plot is the pages' business.

Figures are made with :class:`matplotlib.figure.Figure`, never ``pyplot``: no global state,
so two requests can draw at once.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

from orchestrator.app.records import StepInfo

ACCENT = "#2f6fde"
MUTED = "#6b7385"
GRID = "#e1e4ea"
WARN = "#d23c3c"
FSC_COLORS = {"half_maps": ACCENT, "vs_reference": "#1f9d57"}
FSC_LABELS = {"half_maps": "half maps", "vs_reference": "map vs reference"}


def _figure(width: float = 6.4, height: float = 3.6) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    _style(axes)
    return figure, axes


def _style(axes: Axes) -> None:
    axes.grid(True, color=GRID, linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        axes.spines[side].set_color("#9aa3b5")
    axes.tick_params(colors="#3a4254", labelsize=9)


_SAVING = threading.Lock()


def svg(figure: Figure) -> bytes:
    """The figure as SVG with real text (selectable, small), not glyph outlines.

    The SVG writer reads those settings from matplotlib's global rcParams: the lock keeps
    two requests from restoring each other's settings."""
    import matplotlib

    buffer = io.BytesIO()
    with _SAVING, matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "orch"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None}, dpi=150)
    return buffer.getvalue()


def _no_data(message: str) -> bytes:
    figure, axes = _figure(6.4, 1.6)
    axes.set_axis_off()
    axes.text(0.5, 0.5, message, ha="center", va="center", color=MUTED, fontsize=11, transform=axes.transAxes)
    return svg(figure)


def _resolution_axis(axes: Axes) -> None:
    """A top axis in Å over a bottom axis in 1/Å (what a user reads off an FSC or CTF plot)."""
    def to_angstrom(s: Any) -> Any:
        with np.errstate(divide="ignore"):
            return 1.0 / np.maximum(np.asarray(s, dtype=float), 1e-6)

    top = axes.secondary_xaxis("top", functions=(to_angstrom, to_angstrom))
    top.set_xlabel("resolution (Å)", fontsize=9, color=MUTED)
    top.tick_params(labelsize=8, colors=MUTED)
    low, high = axes.get_xlim()
    ticks = [a for a in (100, 50, 30, 20, 15, 10, 8, 6, 5, 4, 3.5, 3, 2.5, 2) if low < 1 / a <= high]
    top.set_xticks(ticks)
    top.set_xticklabels([f"{a:g}" for a in ticks])


# --------------------------------------------------------------------------- FSC

def fsc_plot(curves: Mapping[str, Mapping[str, Sequence[float]]], resolutions: Mapping[str, float | None]) -> bytes:
    """FSC curves against spatial frequency with the 0.143 (and, against a reference, 0.5)
    thresholds and where each curve crosses them (``resolutions``: name -> Å)."""
    figure, axes = _figure()
    top = 0.0
    for name, curve in curves.items():
        freq = np.asarray(curve["frequency"], dtype=float)
        values = np.asarray(curve["fsc"], dtype=float)
        axes.plot(freq, values, color=FSC_COLORS.get(name, MUTED), linewidth=1.8, label=FSC_LABELS.get(name, name))
        top = max(top, float(freq.max()) if freq.size else 0.0)
    thresholds = [0.143] + ([0.5] if "vs_reference" in curves else [])
    for level in thresholds:
        axes.axhline(level, color=MUTED, linestyle="--", linewidth=1)
        axes.text(top, level + 0.02, f"{level:g}", ha="right", va="bottom", color=MUTED, fontsize=8)
    for name, resolution in resolutions.items():
        if resolution:
            level = 0.5 if name == "vs_reference" else 0.143
            axes.axvline(1 / resolution, color=FSC_COLORS.get(name, MUTED), linestyle=":", linewidth=1.2)
            axes.annotate(f"{resolution:.2f} Å", (1 / resolution, level), xytext=(6, 10), textcoords="offset points",
                          color=FSC_COLORS.get(name, MUTED), fontsize=10, fontweight="bold")
    axes.set_xlim(0, top or 1)
    axes.set_ylim(min(-0.1, axes.get_ylim()[0]), 1.05)
    axes.set_xlabel("spatial frequency (1/Å)", fontsize=9)
    axes.set_ylabel("FSC", fontsize=9)
    axes.legend(frameon=False, fontsize=9, loc="upper right")
    _resolution_axis(axes)
    return svg(figure)


# --------------------------------------------------------------------------- distributions

def histogram(values: np.ndarray, label: str, bins: int = 40, color: str = ACCENT) -> bytes:
    """A histogram of ``values`` (missing ones left out and counted in the title)."""
    data = np.asarray(values, dtype=float)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return _no_data(f"no {label} to show")
    figure, axes = _figure(6.4, 3.0)
    axes.hist(finite, bins=min(bins, max(5, int(np.sqrt(finite.size)) * 2)), color=color, edgecolor="white",
              linewidth=0.5)
    axes.set_xlabel(label, fontsize=9)
    axes.set_ylabel("count", fontsize=9)
    _integer_ticks(axes)
    median = float(np.median(finite))
    axes.axvline(median, color=WARN, linewidth=1.2)
    axes.annotate(f"median {_number(median)}", (median, 1), xycoords=("data", "axes fraction"), xytext=(4, -12),
                  textcoords="offset points", color=WARN, fontsize=9,
                  bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    missing = data.size - finite.size
    axes.set_title(f"{finite.size:,} values" + (f" ({missing:,} missing)" if missing else ""), fontsize=9,
                   color=MUTED, loc="left")
    return svg(figure)


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _integer_ticks(axes: Axes, axis: str = "y") -> None:
    from matplotlib.ticker import MaxNLocator

    (axes.yaxis if axis == "y" else axes.xaxis).set_major_locator(MaxNLocator(integer=True))


def per_micrograph(micrograph_ids: np.ndarray, what: str = "particles") -> bytes:
    """How many items each micrograph has: one bar per micrograph when there are few, the
    distribution of the counts when there are many."""
    ids = np.asarray(micrograph_ids)
    if ids.size == 0:
        return _no_data(f"no {what}")
    values, counts = np.unique(ids, return_counts=True)
    if values.size > 60:
        return histogram(counts.astype(float), f"{what} per micrograph ({values.size:,} micrographs)")
    figure, axes = _figure(6.4, 3.0)
    axes.bar(np.arange(values.size), counts, color=ACCENT)
    step = max(1, values.size // 20)
    axes.set_xticks(np.arange(values.size)[::step])
    axes.set_xticklabels([str(v) for v in values[::step]], fontsize=8)
    axes.set_xlabel("micrograph id", fontsize=9)
    axes.set_ylabel(what, fontsize=9)
    _integer_ticks(axes)
    axes.axhline(float(counts.mean()), color=WARN, linewidth=1.2)
    axes.set_title(f"{ids.size:,} {what} on {values.size} micrographs, {counts.mean():.1f} on average",
                   fontsize=9, color=MUTED, loc="left")
    return svg(figure)


def class_sizes(sizes: Sequence[int]) -> bytes:
    """Particles in each class, largest first as the classes are numbered."""
    if not sizes:
        return _no_data("no classes")
    figure, axes = _figure(6.4, 3.0)
    total = sum(sizes)
    axes.bar(np.arange(1, len(sizes) + 1), sizes, color=ACCENT)
    axes.set_xlabel("class", fontsize=9)
    axes.set_ylabel("particles", fontsize=9)
    _integer_ticks(axes)
    axes.set_title(f"{total:,} particles in {len(sizes)} classes", fontsize=9, color=MUTED, loc="left")
    if len(sizes) <= 30:
        axes.set_xticks(np.arange(1, len(sizes) + 1))
    return svg(figure)


def angular_distribution(rot: np.ndarray, tilt: np.ndarray) -> bytes:
    """Where the particles' views lie on the sphere (rot as longitude, tilt from the pole), as
    a density on a Mollweide map: an empty region is a view the data lacks."""
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure

    rot_d = (np.asarray(rot, dtype=float) + 180.0) % 360.0 - 180.0
    latitude = 90.0 - np.asarray(tilt, dtype=float)
    keep = np.isfinite(rot_d) & np.isfinite(latitude)
    if not keep.any():
        return _no_data("no angles")
    # bins of 5° for a large set; coarser for a small one, so that the bins are not mostly empty
    n_lon = int(np.clip(2 * np.sqrt(keep.sum() / 4), 12, 72)) // 2 * 2
    counts, lon_edges, lat_edges = np.histogram2d(rot_d[keep], np.clip(latitude[keep], -90, 90),
                                                  bins=(n_lon, n_lon // 2), range=((-180, 180), (-90, 90)))
    figure = Figure(figsize=(6.4, 3.6), dpi=100, layout="constrained")
    axes = figure.add_subplot(projection="mollweide")
    # bins of equal angles shrink towards the poles: count per bin of the equator's area, so a
    # uniform spread of views looks uniform
    band_area = np.diff(np.sin(np.deg2rad(lat_edges)))
    counts = counts / (band_area / band_area.max())[None, :]
    masked = np.ma.masked_equal(counts.T, 0)
    peak, least = float(counts.max()), float(counts[counts > 0].min())
    # a log scale where the counts span decades (a preferred view), else a linear one
    norm = LogNorm(vmin=least, vmax=peak) if peak > 20 * least else Normalize(vmin=0, vmax=max(peak, 1.0))
    mesh = axes.pcolormesh(np.deg2rad(lon_edges), np.deg2rad(lat_edges), masked, cmap="viridis", norm=norm,
                           rasterized=True)  # thousands of cells: one embedded image, not thousands of paths
    axes.set_facecolor("#f5f6f8")
    axes.grid(True, color="#b9c0cc", linewidth=0.5)
    axes.tick_params(labelsize=7, colors=MUTED)
    bar = figure.colorbar(mesh, ax=axes, shrink=0.7, label="particles per bin (equator's area)")
    bar.ax.tick_params(labelsize=8)
    axes.set_title(f"{int(keep.sum()):,} particles (rot, 90° − tilt)", fontsize=9, color=MUTED)
    return svg(figure)


# --------------------------------------------------------------------------- steps

_BATCH_SUFFIX = re.compile(r"_\d+$")


def step_resources(steps: Sequence[StepInfo]) -> bytes:
    """Each step's duration and peak memory side by side; steps of one batch family
    (``insert_0000``, ``insert_0001``...) become one bar (total time, highest memory) when
    there are too many to read one by one."""
    from matplotlib.figure import Figure

    rows: list[tuple[str, float, float]] = [
        (s.name, s.duration_s or 0.0, s.peak_memory_mb or 0.0) for s in steps if s.started_at is not None]
    if not rows:
        return _no_data("no step has run yet")
    if len(rows) > 30:
        groups: dict[str, list[tuple[str, float, float]]] = {}
        for row in rows:
            groups.setdefault(_BATCH_SUFFIX.sub("_*", row[0]), []).append(row)
        rows = [(f"{name} ×{len(members)}" if len(members) > 1 else members[0][0],
                 sum(m[1] for m in members), max(m[2] for m in members)) for name, members in groups.items()]
    names = [row[0] for row in rows][::-1]
    height = min(12.0, 1.2 + 0.28 * len(rows))
    figure = Figure(figsize=(7.2, height), dpi=100, layout="constrained")
    time_axes, memory_axes = figure.subplots(1, 2, sharey=True)
    positions = np.arange(len(rows))
    for axes, values, color, label in ((time_axes, [r[1] for r in rows][::-1], ACCENT, "duration (s)"),
                                       (memory_axes, [r[2] for r in rows][::-1], "#1f9d57", "peak memory (MB)")):
        _style(axes)
        axes.barh(positions, values, color=color, height=0.7)
        axes.set_xlabel(label, fontsize=9)
        axes.grid(True, axis="x", color=GRID)
        axes.grid(False, axis="y")
    time_axes.set_yticks(positions)
    time_axes.set_yticklabels(names, fontsize=8)
    if not any(r[2] for r in rows):
        memory_axes.text(0.5, 0.5, "not measured", ha="center", va="center", color=MUTED,
                         transform=memory_axes.transAxes)
    return svg(figure)


# --------------------------------------------------------------------------- CTF

def ctf_profile_plot(profile: Mapping[str, Any]) -> bytes:
    """The micrograph's rotational average (background removed, astigmatism corrected)
    against the fitted CTF², with the local agreement of the two and the fit's resolution."""
    freqs = np.asarray(profile["frequency"], dtype=float)
    figure, axes = _figure(7.2, 3.8)
    data = np.asarray(profile["spectrum"], dtype=float)
    model = np.asarray(profile["model"], dtype=float)
    axes.plot(freqs, data, color="#3a4254", linewidth=1.0, label="spectrum (rotational average)")
    axes.plot(freqs, model, color=WARN, linewidth=1.3, label="fitted CTF²")
    axes.plot(freqs, np.asarray(profile["local_cc"], dtype=float), color="#1f9d57", linewidth=1.2,
              label="local agreement (2D)")
    threshold = profile.get("threshold")
    if threshold is not None:
        axes.axhline(threshold, color="#1f9d57", linestyle=":", linewidth=0.9)
    resolution = profile.get("resolution_a")
    if resolution and np.isfinite(resolution):
        axes.axvline(1 / resolution, color=MUTED, linestyle=":", linewidth=1.2)
        axes.annotate(f"fit to {resolution:.1f} Å", (1 / resolution, 1.0), xycoords=("data", "axes fraction"),
                      xytext=(4, -14), textcoords="offset points", color=MUTED, fontsize=9)
    axes.set_xlim(float(profile.get("s_min", 0.0)), float(freqs.max()) if freqs.size else 1.0)
    axes.set_ylim(-0.6, 1.15)
    axes.set_xlabel("spatial frequency (1/Å)", fontsize=9)
    axes.set_ylabel("normalised amplitude", fontsize=9)
    axes.legend(frameon=False, fontsize=8, loc="lower left", ncols=3)
    axes.set_title(profile.get("title", ""), fontsize=9, color=MUTED, loc="left")
    _resolution_axis(axes)
    return svg(figure)
