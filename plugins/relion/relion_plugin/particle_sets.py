"""Particle sets as the RELION protocols read and write them (through the step's context).

Conventions (shared with the emtools plugin, which makes and reads the same sets):

* ``image_path`` is relative to the project folder when the stack lies inside it
  (``runs/extract/particles/mic_0001.mrcs``), absolute otherwise; a relative path that is
  not found there is also tried against the producing run's folder;
* the set's optics groups are in its properties as ``"optics": [{group, name, voltage_kv,
  cs_mm, amplitude_contrast, pixel_size_a, image_size}, ...]`` (the fields of
  :class:`~orchestrator.objects.em.Optics`); a set that only has ``"acquisition"`` (one
  group) is read as one optics group whose box size comes from its first stack. Sets
  written here carry both, plus ``box_size``, so the native protocols can read them too;
* a set output's value is ``{"set_id": N, "size": n}``; a step registers its sets with
  ``ctx.register_set`` and puts the placeholder it returns where ``N`` goes.

Sets written here keep the ids of the particles they come from, so a particle can be
followed from extraction through classification and refinement.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.em.errors import MrcFormatError
from orchestrator.em.mrc import read_header
from orchestrator.objects.em import Optics
from orchestrator.protocol import StepContext
from relion_plugin.errors import RelionInputError


def optics_to_properties(optics: Sequence[Optics]) -> list[dict[str, Any]]:
    """Optics groups as JSON for a set's properties."""
    return [dataclasses.asdict(group) for group in optics]


def optics_from_properties(properties: Mapping[str, Any], where: str) -> list[Optics] | None:
    """The optics groups a set's properties declare (None when they declare none)."""
    if properties.get("optics"):
        try:
            return [Optics(**dict(group)) for group in properties["optics"]]
        except TypeError as exc:
            raise RelionInputError(f"{where}: property 'optics' is malformed ({exc})") from None
    acquisition = properties.get("acquisition")
    if acquisition:
        return [
            Optics(
                group=1,
                name="opticsGroup1",
                voltage_kv=float(acquisition.get("voltage_kv", 300.0)),
                cs_mm=float(acquisition.get("cs_mm", 2.7)),
                amplitude_contrast=float(acquisition.get("amplitude_contrast", 0.1)),
                pixel_size_a=float(acquisition["pixel_size_a"]),
            )
        ]
    return None


def resolve_image_paths(paths: np.ndarray, project_dir: Path, producer_dir: Path) -> np.ndarray:
    """Absolute stack paths: a relative ``image_path`` is tried against the project folder,
    then against the producing run's folder (the first that exists wins; the project folder
    when neither does, so the error names the conventional place)."""
    unique, inverse = np.unique(np.asarray(paths, dtype=str), return_inverse=True)
    resolved = []
    for name in unique:
        if not name or os.path.isabs(name):
            resolved.append(name)
            continue
        candidates = [Path(project_dir) / name, Path(producer_dir) / name]
        found = next((c for c in candidates if c.exists()), candidates[0])
        resolved.append(str(found.resolve()))
    return np.array(resolved, dtype=object)[inverse.reshape(-1)] if len(unique) else np.asarray(paths, dtype=object)


def portable_paths(paths: np.ndarray, project_dir: Path) -> np.ndarray:
    """Absolute stack paths as a set stores them: relative to the project folder when inside
    it (so a project that is moved keeps working), absolute otherwise."""
    unique, inverse = np.unique(np.asarray(paths, dtype=str), return_inverse=True)
    project = Path(project_dir).resolve()
    out = []
    for name in unique:
        path = Path(name)
        inside = path.is_absolute() and project in path.parents
        out.append(str(path.relative_to(project)) if inside else name)
    return np.array(out, dtype=object)[inverse.reshape(-1)] if len(unique) else np.asarray(paths, dtype=object)


@dataclasses.dataclass
class LoadedParticles:
    """An input particle set ready for RELION: columns with absolute paths, and its optics."""

    set_id: int
    name: str
    columns: dict[str, np.ndarray]
    optics: list[Optics]
    properties: dict[str, Any]

    @property
    def count(self) -> int:
        return len(self.columns["id"])

    @property
    def box(self) -> int:
        return self.optics[0].image_size

    @property
    def pixel_size(self) -> float:
        return self.optics[0].pixel_size_a


def load_particles(ctx: StepContext, set_id: int, producer_dir: str) -> LoadedParticles:
    """Read an input particle set (enabled particles only) and check its stacks exist.

    Raises RelionInputError naming the set when it is empty, has no optics, uses an
    optics group it does not define, or points at stacks that are missing or not MRC.
    """
    item_set = ctx.open_set(set_id)
    where = f"particle set {set_id} ({item_set.name!r})"
    columns = item_set.to_numpy()
    properties = dict(item_set.properties)
    keep = columns["enabled"].astype(bool)
    columns = {name: values[keep] for name, values in columns.items()}
    if len(columns["id"]) == 0:
        raise RelionInputError(f"{where} holds no enabled particles")
    columns["image_path"] = resolve_image_paths(columns["image_path"], Path(ctx.project_dir), Path(producer_dir))
    stacks = {str(p) for p in np.unique(columns["image_path"].astype(str))}
    boxes = _stack_boxes(stacks, where)
    optics = optics_from_properties(properties, where)
    if optics is None:
        raise RelionInputError(
            f"{where} has no optics groups: its properties need 'optics' (or 'acquisition' with pixel_size_a)"
        )
    sizes = sorted(set(boxes.values()))
    if len(sizes) != 1:
        raise RelionInputError(f"{where}: its stacks have different box sizes {sizes}; RELION needs one")
    optics = [dataclasses.replace(o, image_size=sizes[0]) if o.image_size in (0, sizes[0]) else o for o in optics]
    wrong = [o for o in optics if o.image_size != sizes[0]]
    if wrong:
        raise RelionInputError(
            f"{where}: optics group {wrong[0].group} says box {wrong[0].image_size} px but the stacks hold "
            f"{sizes[0]} px images"
        )
    defined = {o.group for o in optics}
    used = {int(g) for g in np.unique(columns["optics_group"])}
    if used - defined:
        raise RelionInputError(
            f"{where}: particles use optics group(s) {sorted(used - defined)} that it does not define"
        )
    return LoadedParticles(set_id, item_set.name, columns, optics, properties)


def _stack_boxes(stacks: set[str], where: str) -> dict[str, int]:
    """Box size of every stack, with errors that name the missing or broken one."""
    boxes = {}
    for stack in sorted(stacks):
        if not stack:
            raise RelionInputError(f"{where}: some particles have no image (empty image_path)")
        try:
            boxes[stack] = read_header(stack).shape[-1]
        except MrcFormatError as exc:
            raise RelionInputError(f"{where}: stack {stack} cannot be used: {exc}") from None
    return boxes


def set_properties(
    optics: Sequence[Optics], inherited: Mapping[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """Properties of a particle set written here: the input's, with optics, acquisition and box."""
    props = dict(inherited or {})
    first = optics[0]
    acquisition = dict(props.get("acquisition") or {})
    acquisition.update(
        voltage_kv=first.voltage_kv,
        cs_mm=first.cs_mm,
        amplitude_contrast=first.amplitude_contrast,
        pixel_size_a=first.pixel_size_a,
    )
    acquisition.setdefault("dose_per_frame", None)
    acquisition.setdefault("magnification", None)
    props.update(optics=optics_to_properties(optics), acquisition=acquisition, box_size=first.image_size, **extra)
    return props


def write_particle_set(
    ctx: StepContext,
    name: str,
    columns: Mapping[str, np.ndarray],
    optics: Sequence[Optics],
    properties: Mapping[str, Any],
) -> dict[str, str]:
    """Register a particle set of this step; returns its placeholder (see ``StepContext.register_set``).

    ``columns`` hold absolute image paths; they are stored portable (see :func:`portable_paths`).
    ``properties`` are the set's (see :func:`set_properties`).
    """
    data = dict(columns)
    data["image_path"] = portable_paths(data["image_path"], ctx.project_dir)
    for text in ("image_path", "micrograph_name"):
        if text in data:
            data[text] = np.asarray(data[text], dtype=object)
    return ctx.register_set(name, "Particle", data, dict(properties))
