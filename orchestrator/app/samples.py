"""Small samples of a project's data, read from a run's output: one micrograph (with its picks),
the first class averages or particles, a map. What a form's wizard computes on to let a user
choose a value by eye before the whole run is launched.

An output is named as a pointer param names it (``ctffind.micrographs``, ``12.classes``) and must
be registered (its run finished). Files are found as the sets store them: relative to the
project folder, or absolute. Every sample is bounded (one micrograph, at most
:data:`MAX_IMAGES` images), so a project of a million particles answers as fast as a small one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.errors import NotFoundError, UsageError
from orchestrator.objects.params import Pointer
from orchestrator.project import Project
from orchestrator.store import ItemSet, OutputRecord, ProjectStore, RunState

MAX_IMAGES = 24
#: particles averaged into the first image of a particle sample (their mean shows the particle's size)
MEAN_OF_PARTICLES = 500
MICROGRAPHS = "SetOfMicrographs"
COORDINATES = "SetOfCoordinates"
CLASSES_2D = "SetOfClasses2D"
PARTICLES = "SetOfParticles"
VOLUME = "Volume"


@dataclass(frozen=True)
class MicrographSample:
    """One micrograph (``image[y, x]``), its pixel size, and the picks on it (``picks[i] = x, y``
    in its pixels) when it came from a set of coordinates."""

    source: str
    name: str
    index: int
    count: int
    pixel_size_a: float
    image: np.ndarray
    picks: np.ndarray | None = None
    #: the diameter the picks were made for, in Å (when the coordinates say)
    particle_diameter_a: float | None = None


@dataclass(frozen=True)
class ImagesSample:
    """Some 2D images of one size (class averages, particles, a map's central slices), a label
    for each, and their pixel size."""

    source: str
    kind: str
    pixel_size_a: float
    images: np.ndarray
    labels: list[str]


@dataclass(frozen=True)
class VolumeSample:
    """A map (``volume[z, y, x]``) and its voxel size."""

    source: str
    pixel_size_a: float
    volume: np.ndarray


@dataclass(frozen=True)
class _Output:
    project: Project
    record: OutputRecord
    run_dir: Path


def output_type(target: ProjectTarget, pointer: str) -> str:
    """The type of the registered output ``pointer`` names (NotFoundError when there is none yet)."""
    with project_store(target) as (_project, store):
        return _output(_project, store, pointer).record.type_name


def micrograph_sample(target: ProjectTarget, pointer: str, index: int = 0) -> MicrographSample:
    """Micrograph ``index`` (in set order, enabled ones) of a set of micrographs, or of the micrographs
    a set of coordinates was picked on (then only those with picks count, and the picks come too)."""
    with project_store(target) as (project, store):
        output = _output(project, store, pointer)
        kind = output.record.type_name
        if kind == MICROGRAPHS:
            micrographs, picks_set = _set_of(store, output, pointer), None
        elif kind == COORDINATES:
            picks_set = _set_of(store, output, pointer)
            source_id = picks_set.properties.get("micrographs_set_id")
            if not isinstance(source_id, int):
                raise UsageError(f"{pointer}: the coordinates do not say which micrographs they were picked on")
            micrographs = store.get_set(source_id)
        else:
            raise UsageError(f"{pointer} is a {kind}: a micrograph comes from a {MICROGRAPHS} or a {COORDINATES}")
        rows = micrographs.to_numpy(["id", "path", "enabled"])
        ids, paths = rows["id"][rows["enabled"]], rows["path"][rows["enabled"]]
        coordinates = picks_set.to_numpy(["x", "y", "micrograph_id"]) if picks_set is not None else None
        if coordinates is not None:  # only micrographs with picks: boxes are drawn on them
            keep = np.isin(ids, coordinates["micrograph_id"])
            ids, paths = ids[keep], paths[keep]
        if len(ids) == 0:
            raise UsageError(f"{pointer}: no micrograph to show (the set holds none enabled"
                             + (" with picks)" if coordinates is not None else ")"))
        index = min(max(0, index), len(ids) - 1)
        pixel = _pixel_size(micrographs.properties, pointer)
        picks, diameter = None, None
        if coordinates is not None and picks_set is not None:
            mine = coordinates["micrograph_id"] == ids[index]
            picks = np.stack([coordinates["x"][mine], coordinates["y"][mine]], axis=1).astype(np.float64)
            given = picks_set.properties.get("particle_diameter_a")
            diameter = float(given) if isinstance(given, int | float) and given > 0 else None
        path = _file(project, str(paths[index]))
    from orchestrator.em import mrc

    return MicrographSample(pointer, path.name, index, len(ids), pixel, mrc.read_image(path).astype(np.float32),
                            picks, diameter)


def images_sample(target: ProjectTarget, pointer: str, limit: int = 12) -> ImagesSample:
    """Images to draw a mask on: the first ``limit`` class averages (enabled, not empty) of a set of
    2D classes; the mean of the first particles then single particles of a set of particles; the
    central slices (z, y, x) of a map."""
    limit = min(max(1, limit), MAX_IMAGES)
    with project_store(target) as (project, store):
        output = _output(project, store, pointer)
        kind = output.record.type_name
        if kind == VOLUME:
            volume = _volume(output, pointer)
            return ImagesSample(pointer, "slices", volume.pixel_size_a, central_slices(volume.volume),
                                ["central slice, z", "central slice, y", "central slice, x"])
        if kind not in (CLASSES_2D, PARTICLES):
            raise UsageError(f"{pointer} is a {kind}: images come from a {CLASSES_2D}, a {PARTICLES} or a {VOLUME}")
        item_set = _set_of(store, output, pointer)
        pixel = _pixel_size(item_set.properties, pointer)
        if kind == CLASSES_2D:
            rows = item_set.to_numpy(["id", "image_index", "image_path", "size", "enabled"])
            keep = rows["enabled"] & (rows["size"] > 0)
            wanted = {name: values[keep][:limit] for name, values in rows.items()}
            labels = [f"class {int(i)} · {int(n)} particles" for i, n in zip(wanted["id"], wanted["size"], strict=True)]
            images = _read_images(project, wanted["image_path"], wanted["image_index"])
            return ImagesSample(pointer, "classes", pixel, images, labels)
        rows = item_set.to_numpy(["image_index", "image_path", "enabled"])
        paths, indices = rows["image_path"][rows["enabled"]], rows["image_index"][rows["enabled"]]
        if len(paths) == 0:
            raise UsageError(f"{pointer}: the set holds no enabled particle")
        many = _read_images(project, paths[:MEAN_OF_PARTICLES], indices[:MEAN_OF_PARTICLES])
        images = np.concatenate([many.mean(axis=0, keepdims=True), many[:limit - 1]])
        labels = [f"mean of {len(many)} particles"] + [f"particle {i + 1}" for i in range(len(images) - 1)]
        return ImagesSample(pointer, "particles", pixel, images.astype(np.float32), labels)


def volume_sample(target: ProjectTarget, pointer: str) -> VolumeSample:
    """The map of a Volume output, with its voxel size (the output's, else the file's)."""
    with project_store(target) as (project, store):
        output = _output(project, store, pointer)
        if output.record.type_name != VOLUME:
            raise UsageError(f"{pointer} is a {output.record.type_name}, not a {VOLUME}")
        return _volume(output, pointer)


def central_slices(volume: np.ndarray) -> np.ndarray:
    """The three central sections of a cubic map: ``[z = n/2, y = n/2, x = n/2]``."""
    nz, ny, nx = volume.shape
    return np.stack([volume[nz // 2], volume[:, ny // 2, :], volume[:, :, nx // 2]]).astype(np.float32)


def _output(project: Project, store: ProjectStore, pointer: str) -> _Output:
    try:
        parsed = Pointer.parse(pointer)
    except ValueError as exc:
        raise UsageError(f"sample {pointer!r}: {exc}") from None
    run = store.runs.get(parsed.run)
    if run.run_state is not RunState.FINISHED:
        raise NotFoundError(f"run {run.name} is {run.state}: its output '{parsed.output}' is not made yet")
    return _Output(project, store.outputs.get(run.id, parsed.output), project.run_dir(run.name))


def _set_of(store: ProjectStore, output: _Output, pointer: str) -> ItemSet:
    if output.record.set_id is None:
        raise UsageError(f"{pointer} ({output.record.type_name}) is not a set")
    return store.get_set(output.record.set_id)


def _pixel_size(properties: Mapping[str, Any], pointer: str) -> float:
    acquisition = properties.get("acquisition") or {}
    pixel = acquisition.get("pixel_size_a") if isinstance(acquisition, Mapping) else None
    if not isinstance(pixel, int | float) or pixel <= 0:
        raise UsageError(f"{pointer}: the set does not give its pixel size (no acquisition properties)")
    return float(pixel)


def _file(project: Project, stored: str) -> Path:
    """A path as a set stores it: relative to the project folder, or absolute."""
    return project.path / stored


def _read_images(project: Project, paths: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Images ``indices[i]@paths[i]`` in that order, one read per stack."""
    from orchestrator.em import mrc

    if len(paths) == 0:
        raise UsageError("the set holds no image to show")
    order: dict[str, list[int]] = {}
    for position, path in enumerate(paths):
        order.setdefault(str(path), []).append(position)
    images: list[np.ndarray | None] = [None] * len(paths)
    for path, positions in order.items():
        read = mrc.read_stack_images(_file(project, path), [int(indices[p]) for p in positions])
        for position, image in zip(positions, read, strict=True):
            images[position] = image
    return np.stack([image for image in images if image is not None]).astype(np.float32)


def _volume(output: _Output, pointer: str) -> VolumeSample:
    from orchestrator.em import mrc

    if not output.record.path:
        raise UsageError(f"{pointer}: the volume output names no file")
    path = output.run_dir / output.record.path
    value = output.record.value or {}
    pixel = value.get("pixel_size_a") if isinstance(value, Mapping) else None
    if not isinstance(pixel, int | float) or pixel <= 0:
        pixel = mrc.read_header(path).voxel_size[0]
    volume = mrc.read_volume(path).astype(np.float32)
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise UsageError(f"{pointer}: {path.name} is {volume.shape}, not a cubic map")
    return VolumeSample(pointer, float(pixel), volume)
