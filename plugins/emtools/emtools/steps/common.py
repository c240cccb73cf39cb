"""What the emtools step functions share: batches, files, acquisition.

Conventions every emtools protocol follows:

* steps read sets with ``ctx.open_set(id)`` and register them with ``ctx.register_set``,
  never through the store (see :class:`orchestrator.protocol.StepContext`);
* a set output's value is ``{"set_id": N, "size": n, ...}``, ``N`` being the placeholder
  ``ctx.register_set`` returned (the set's id once the step's end is recorded); a
  consumer's ``steps()`` reads ``size`` to decide its batches without opening the store;
* file paths stored in set rows are relative to the project folder when they lie inside
  it (``runs/motioncorr/micrographs/mic_0001.mrc``), absolute otherwise (imported data),
  so a project folder can be moved; :func:`resolve` turns them back into paths;
* per-batch steps write their results to ``batches/NAME_XXXX.json`` in the run folder and
  one ``register`` step gathers them into the output set, so a retried batch never
  appends twice and an interrupted run resumes with the batches it already has.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emtools.kernels.ctf import CtfParams
from orchestrator.protocol import OutputRef, SetReader, StepContext

# Acquisition keys, as orchestrator.objects.em.Acquisition names them.
ACQUISITION_KEYS = ("voltage_kv", "cs_mm", "amplitude_contrast", "pixel_size_a", "dose_per_frame", "magnification")


class EmtoolsStepError(RuntimeError):
    """A step cannot go on with the data it was given; the message says which data and why."""


def batches(n_items: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n_items)`` in slices of at most ``batch_size``."""
    size = max(1, int(batch_size))
    return [(start, min(start + size, n_items)) for start in range(0, n_items, size)]


def set_id_of(ref: OutputRef) -> int:
    """The set id a pointer to a set output carries (from its registered value)."""
    value = ref.value if isinstance(ref.value, Mapping) else {}
    if not isinstance(value.get("set_id"), int):
        raise EmtoolsStepError(f"input {ref} ({ref.type_name}) carries no set id; was it produced by a set output?")
    return int(value["set_id"])


def size_of(ref: OutputRef) -> int:
    """Number of items of a set output (its value's ``size``; 0 when it does not say)."""
    value = ref.value if isinstance(ref.value, Mapping) else {}
    return int(value.get("size") or 0)


def project_path(ctx: StepContext, path: Path) -> str:
    """``path`` relative to the project folder when inside it, else absolute (see module doc)."""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(Path(ctx.project_dir).resolve()))
    except ValueError:
        return str(absolute)


def resolve(ctx: StepContext, stored: str) -> Path:
    """The file a stored (project-relative or absolute) path names."""
    return Path(ctx.project_dir) / stored


def write_json(path: Path, data: Any) -> Path:
    """Write JSON through a temporary file and a rename (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, allow_nan=True))
    os.replace(tmp, path)
    return path


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise EmtoolsStepError(f"{path}: missing; the step that writes it has not run") from None


def batch_file(name: str, index: int) -> str:
    """Run-relative path of the result file of batch ``index`` of a per-batch step."""
    return f"batches/{name}_{index:04d}.json"


def gather_batches(ctx: StepContext, files: Sequence[str]) -> list[Any]:
    """Read the per-batch result files, in order."""
    return [read_json(ctx.path(name)) for name in files]


def acquisition(voltage_kv: float, cs_mm: float, amplitude_contrast: float, pixel_size_a: float,
                dose_per_frame: float | None = None) -> dict[str, Any]:
    """An acquisition record as a set's ``properties["acquisition"]`` holds it."""
    return {"voltage_kv": float(voltage_kv), "cs_mm": float(cs_mm), "amplitude_contrast": float(amplitude_contrast),
            "pixel_size_a": float(pixel_size_a), "dose_per_frame": None if dose_per_frame is None
            else float(dose_per_frame), "magnification": None}


def set_acquisition(item_set: SetReader) -> dict[str, Any]:
    """The acquisition record of a set; an error naming the set when it has none."""
    acq = item_set.properties.get("acquisition")
    if not acq:
        raise EmtoolsStepError(f"set {item_set.name!r} (id {item_set.id}) has no acquisition properties "
                               "(voltage, Cs, amplitude contrast, pixel size)")
    return dict(acq)


def optics_of(acq: Mapping[str, Any], pixel_size_a: float | None = None) -> CtfParams:
    """Microscope optics of an acquisition record, defocus zero (set per micrograph/particle)."""
    return CtfParams(float(acq["voltage_kv"]), float(acq["cs_mm"]), float(acq["amplitude_contrast"]),
                     float(pixel_size_a or acq["pixel_size_a"]), 0.0, 0.0, 0.0)


def concat_columns(parts: Sequence[Mapping[str, Sequence[Any]]]) -> dict[str, np.ndarray]:
    """Columns of several batches (lists from JSON) joined into numpy arrays."""
    if not parts:
        return {}
    names = list(parts[0])
    return {name: np.concatenate([np.asarray(part[name]) for part in parts]) if parts else np.empty(0)
            for name in names}


def finite_or_none(value: float) -> float | None:
    """JSON-safe number: NaN and infinities become None (step results must be strict JSON)."""
    value = float(value)
    return value if np.isfinite(value) else None
