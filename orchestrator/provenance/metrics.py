"""Numbers that say how far apart two runs' outputs are, when their files are not identical.

Each metric is named with its unit so a report can say *what* differs and by how much:
the number of items of a set (particles, micrographs, picks), the RMS difference of the
defocus of two CTF sets item by item, the resolution at FSC 0.143 (and against a reference),
and the correlation of two maps voxel by voxel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.em import mrc
from orchestrator.em.errors import MrcFormatError
from orchestrator.store import OutputRecord, ProjectStore

#: value keys of an output that are resolutions in Å, with the name they are reported under
RESOLUTION_KEYS = {"resolution_0143": "resolution at FSC 0.143 (Å)",
                   "resolution_a": "resolution (Å)",
                   "vs_reference_05": "resolution against the reference at FSC 0.5 (Å)",
                   "vs_reference_0143": "resolution against the reference at FSC 0.143 (Å)"}
DEFOCUS_COLUMNS = ("defocus_u", "defocus_v")
MAP_TYPES = ("Volume",)


@dataclass(frozen=True)
class Metric:
    """One measure of one output in both runs; ``difference`` is b - a (or the correlation)."""

    output: str
    name: str
    a: float | int | None
    b: float | int | None
    difference: float | None
    note: str = ""

    @property
    def same(self) -> bool:
        if self.name.startswith("map correlation"):
            return self.difference is not None and self.difference >= 1.0 - 1e-12
        return self.difference == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "same": self.same}


@dataclass(frozen=True)
class OutputSide:
    """One run's output, with where to read its data."""

    store: ProjectStore
    run_dir: Path
    output: OutputRecord


def output_metrics(a: OutputSide, b: OutputSide) -> list[Metric]:
    """Every metric that applies to this pair of outputs (same name, one in each run)."""
    name = a.output.name
    metrics: list[Metric] = []
    if a.output.set_id is not None and b.output.set_id is not None:
        metrics.extend(_set_metrics(name, a, b))
    metrics.extend(_resolution_metrics(name, a.output.value or {}, b.output.value or {}))
    if a.output.type_name in MAP_TYPES and a.output.path and b.output.path:
        metrics.append(map_correlation(name, a.run_dir / a.output.path, b.run_dir / b.output.path))
    return metrics


def _set_metrics(name: str, a: OutputSide, b: OutputSide) -> list[Metric]:
    set_a, set_b = a.store.get_set(int(a.output.set_id or 0)), b.store.get_set(int(b.output.set_id or 0))
    size_a, size_b = set_a.size, set_b.size
    metrics = [Metric(name, f"items ({set_a.item_type})", size_a, size_b, float(size_b - size_a))]
    columns_a = {column.name for column in set_a.schema.columns}
    columns_b = {column.name for column in set_b.schema.columns}
    if set(DEFOCUS_COLUMNS) <= columns_a and set(DEFOCUS_COLUMNS) <= columns_b:
        data_a, data_b = set_a.to_numpy(["id", *DEFOCUS_COLUMNS]), set_b.to_numpy(["id", *DEFOCUS_COLUMNS])
        metrics.append(_defocus_rms(name, data_a, data_b))
    return metrics


def _defocus_rms(name: str, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> Metric:
    """RMS over items (matched by id) of the defocus U and V differences, in Å."""
    shared, in_a, in_b = np.intersect1d(a["id"], b["id"], return_indices=True)
    label = "defocus RMS difference (Å)"
    if shared.size == 0:
        return Metric(name, label, None, None, None, "no item ids in common")
    squares = [(np.asarray(a[col], float)[in_a] - np.asarray(b[col], float)[in_b]) ** 2 for col in DEFOCUS_COLUMNS]
    rms = float(np.sqrt(np.mean(np.concatenate(squares))))
    note = "" if shared.size == len(a["id"]) == len(b["id"]) else f"over the {shared.size} items in both"
    return Metric(name, label, None, None, rms, note)


def _resolution_metrics(name: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Metric]:
    metrics = []
    for key, label in RESOLUTION_KEYS.items():
        value_a, value_b = a.get(key), b.get(key)
        if isinstance(value_a, int | float) and isinstance(value_b, int | float) and _number(value_a) \
                and _number(value_b):
            metrics.append(Metric(name, label, value_a, value_b, float(value_b) - float(value_a)))
    return metrics


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def map_correlation(name: str, path_a: Path, path_b: Path) -> Metric:
    """Pearson correlation of two maps voxel by voxel (1.0: the same map up to scale and offset)."""
    label = "map correlation (Pearson)"
    try:
        map_a, map_b = mrc.read_volume(path_a), mrc.read_volume(path_b)
    except (MrcFormatError, OSError) as exc:
        return Metric(name, label, None, None, None, f"cannot read the maps: {exc}")
    if map_a.shape != map_b.shape:
        return Metric(name, label, None, None, None, f"maps of different shapes {map_a.shape} and {map_b.shape}")
    if np.array_equal(map_a, map_b):
        return Metric(name, label, None, None, 1.0)
    x, y = map_a.astype(np.float64).ravel(), map_b.astype(np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    norm = math.sqrt(float(x @ x) * float(y @ y))
    return Metric(name, label, None, None, float(x @ y) / norm if norm else None,
                  "" if norm else "a map is constant")
