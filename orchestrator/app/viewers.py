"""What the data viewers show: pages of a set in any order, class averages and the subset run
made from a choice of them, a run's maps and FSC curves, columns to plot.

A gallery of a million particles must open at once, so nothing here reads a whole set: a
page in the set's own order is the store's paged query; a page in another order reads two
columns (the sort key and the id), sorts them once and remembers the order (a few orders,
in this process) so that the next pages cost only the query of their own items.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.app.access import ProjectTarget, load_project, project_store
from orchestrator.app.records import OutputInfo, Record, RunInfo
from orchestrator.app.runs import submit_run
from orchestrator.app.sets import SetDetail, SetInfo, count_items, describe_set, parse_conditions, query_set
from orchestrator.errors import NotFoundError, UsageError
from orchestrator.store.set_query import Between, Condition, OneOf

#: the protocol that makes a subset of particles from chosen classes
SUBSET_PROTOCOL = "emtools.select_classes"
#: the columns that say where each item's image is, by item type (path of a file, image in a stack)
IMAGE_COLUMNS: dict[str, tuple[str, ...]] = {
    "Micrograph": ("path",), "Particle": ("image_path", "image_index"), "ClassAverage": ("image_path", "image_index"),
}
ORDER_CACHE_ENTRIES = 4
ORDER_CACHE_SECONDS = 600.0
ORDER_CACHE_BYTES = 256 * 2**20  # 8 bytes an item: four orders of 8 million items
MAX_PAGE = 500


@dataclass(frozen=True)
class GalleryPage(Record):
    """Items ``offset .. offset + len(items)`` of the ``total`` that match, in the order asked."""

    set: SetDetail
    columns: list[str]
    items: list[dict[str, Any]]
    total: int
    offset: int
    limit: int
    sort: str | None
    descending: bool


def gallery_page(target: ProjectTarget, set_id: int, where: Sequence[Condition | str] = (), *,
                 sort: str | None = None, descending: bool = False, columns: Sequence[str] = (),
                 offset: int = 0, limit: int = 50) -> GalleryPage:
    """A page of a set for a gallery: the items' ``id``, image columns and ``columns``.

    An offset past the last item gives the last page; a column or condition the set does not
    have is a UsageError naming its columns.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"page size {limit}: from 1 to {MAX_PAGE}")
    detail = describe_set(target, set_id)
    wanted = list(dict.fromkeys(["id", *IMAGE_COLUMNS.get(detail.item_type, ()), *columns]))
    unknown = [name for name in [*wanted, *([sort] if sort else [])] if name not in detail.columns]
    if unknown:
        raise UsageError(f"set {set_id} ({detail.item_type}) has no column(s) {', '.join(unknown)}; "
                         f"columns: {', '.join(detail.columns)}")
    conditions = parse_conditions(where)
    if sort is None:  # the stored order: the store pages it
        total = count_items(target, set_id, conditions)
        offset = _clamp(offset, limit, total)
        page = query_set(target, set_id, conditions, wanted, offset=offset, limit=limit)
        return GalleryPage(detail, wanted, page.items, total, offset, limit, sort, descending)
    order = sorted_ids(target, detail, conditions, sort, descending)
    offset = _clamp(offset, limit, len(order))
    ids = order[offset:offset + limit]
    items: list[dict[str, Any]] = []
    if len(ids):
        # the id range lets the store skip the chunks outside it (ids grow with the stored order)
        found = query_set(target, set_id, [Between("id", float(ids.min()), float(ids.max())),
                                           OneOf("id", tuple(int(i) for i in ids))],
                          wanted, limit=len(ids)).items
        by_id = {item["id"]: item for item in found}
        items = [by_id[int(i)] for i in ids if int(i) in by_id]
    return GalleryPage(detail, wanted, items, len(order), offset, limit, sort, descending)


def _clamp(offset: int, limit: int, total: int) -> int:
    last = max(0, (total - 1) // limit * limit)
    return min(max(0, offset), last)


_ORDERS: OrderedDict[tuple[Any, ...], tuple[float, np.ndarray]] = OrderedDict()
_ORDERS_LOCK = threading.Lock()


def sorted_ids(target: ProjectTarget, detail: SetDetail, conditions: Sequence[Condition], sort: str,
               descending: bool) -> np.ndarray:
    """The ids of the matching items sorted by ``sort`` (ties in the stored order, missing values
    last either way), remembered for ``ORDER_CACHE_SECONDS`` while the set keeps its size."""
    with project_store(target) as (project, store):
        item_set = store.get_set(detail.id)
        key = (str(project.path), detail.id, detail.name, detail.run_id, item_set.size,
               tuple(conditions), sort, descending)
        now = time.monotonic()
        with _ORDERS_LOCK:
            hit = _ORDERS.get(key)
            if hit is not None and now - hit[0] < ORDER_CACHE_SECONDS:
                _ORDERS.move_to_end(key)
                return hit[1]
        columns = item_set.to_numpy(list(dict.fromkeys(["id", sort])), list(conditions))
    values = columns[sort]
    if values.dtype == object:  # text: sort by the rank of each distinct value
        values = np.unique(values.astype(str), return_inverse=True)[1]
    elif values.dtype == bool:
        values = values.astype(np.int8)
    keys = -values.astype(np.float64) if descending else values
    order = columns["id"][np.argsort(keys, kind="stable")]
    with _ORDERS_LOCK:
        _ORDERS[key] = (now, order)
        while len(_ORDERS) > 1 and (len(_ORDERS) > ORDER_CACHE_ENTRIES or
                                    sum(ids.nbytes for _, ids in _ORDERS.values()) > ORDER_CACHE_BYTES):
            _ORDERS.popitem(last=False)
    return order


@dataclass(frozen=True)
class ClassAverages(Record):
    """A classification's averages (largest first, as they are numbered) and where its
    classified particles are (the output a subset run takes)."""

    run: RunInfo
    classes_set: SetInfo
    classes: list[dict[str, Any]]
    particles_output: str | None
    particles_total: int

    @property
    def sizes(self) -> dict[int, int]:
        return {int(item["id"]): int(item["size"]) for item in self.classes}


def class_averages(target: ProjectTarget, run_ref: int | str) -> ClassAverages:
    """The class averages a run made; NotFoundError when it made none (its outputs named)."""
    with project_store(target) as (_project, store):
        run = store.runs.get(run_ref)
        outputs = [OutputInfo.of(output) for output in store.outputs.list(run.id)]
    classes = next((o for o in outputs if o.type_name.startswith("SetOfClasses") and o.set_id is not None), None)
    if classes is None or classes.set_id is None:
        listed = ", ".join(f"{o.name} ({o.type_name})" for o in outputs) or "none yet"
        raise NotFoundError(f"run {run.name} has no class averages; its outputs: {listed}")
    particles = [o for o in outputs if o.type_name == "SetOfParticles" and o.set_id is not None]
    linked = [o for o in particles if (o.value or {}).get("classes_set_id") == classes.set_id]
    chosen = (linked or particles)[0] if particles else None
    page = query_set(target, classes.set_id, (), ["id", "image_path", "image_index", "size", "resolution"],
                     limit=MAX_PAGE * 20)
    total = sum(int(item["size"]) for item in page.items)
    return ClassAverages(RunInfo.of(run), page.set, page.items, chosen.name if chosen else None, total)


def make_class_subset(target: ProjectTarget, run_ref: int | str, class_ids: Sequence[int], *,
                      name: str | None = None, start_scheduler: bool = True) -> RunInfo:
    """Queue a run of :data:`SUBSET_PROTOCOL` keeping the particles of ``class_ids`` of a
    classification run; a UsageError names a class it does not have."""
    chosen = sorted({int(c) for c in class_ids})
    if not chosen:
        raise UsageError("no class selected: tick the classes to keep")
    averages = class_averages(target, run_ref)
    unknown = [c for c in chosen if c not in averages.sizes]
    if unknown:
        raise UsageError(f"run {averages.run.name} has no class {', '.join(map(str, unknown))}; "
                         f"its classes: 1 to {len(averages.classes)}")
    if averages.particles_output is None:
        raise UsageError(f"run {averages.run.name} registered no classified particles to take a subset of")
    params = {"particles": f"{averages.run.id}.{averages.particles_output}",
              "class_ids": ",".join(map(str, chosen))}
    return submit_run(target, SUBSET_PROTOCOL, params, name=name, start_scheduler=start_scheduler)


@dataclass(frozen=True)
class RunFile(Record):
    """A file output of a run (a map, an FSC table), its path relative to the project when it
    lies inside it, and what the run registered with it."""

    run: RunInfo
    output: OutputInfo
    path: str
    related: dict[str, str]


def output_file(target: ProjectTarget, run_ref: int | str, name: str, type_name: str | None = None) -> RunFile:
    """The file of output ``name`` (of type ``type_name`` when given); a Volume's half maps come
    as ``related`` ("half1", "half2")."""
    with project_store(target) as (project, store):
        run = store.runs.get(run_ref)
        output = OutputInfo.of(store.outputs.get(run.id, name))
        run_dir = project.run_dir(run.name)
        root = project.path
    if type_name is not None and output.type_name != type_name:
        raise NotFoundError(f"output {name} of run {run.name} is a {output.type_name}, not a {type_name}")
    if not output.path:
        raise NotFoundError(f"output {name} of run {run.name} names no file")
    halves = (output.value or {}).get("half_maps") or []
    related = {f"half{i}": _in_project(root, run_dir / str(half)) for i, half in enumerate(halves[:2], 1)}
    return RunFile(RunInfo.of(run), output, _in_project(root, run_dir / output.path), related)


def _in_project(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def fsc_curves(target: ProjectTarget, run_ref: int | str, name: str) -> dict[str, dict[str, list[float]]]:
    """The curves of an FSC output: ``{"half_maps": {"frequency": [1/Å], "fsc": [...]}, ...}``."""
    found = output_file(target, run_ref, name, "FSC")
    path = load_project(target).path / found.path
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFoundError(f"{found.path}: the FSC file of run {found.run.name} is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{found.path}: not an FSC table this viewer reads ({exc})") from None
    curves = {key: value for key, value in document.items()
              if isinstance(value, dict) and isinstance(value.get("frequency"), list)
              and isinstance(value.get("fsc"), list)} if isinstance(document, dict) else {}
    if not curves:
        raise UsageError(f"{found.path}: no curve in it (expected {{name: {{frequency: [...], fsc: [...]}}}})")
    return curves


def set_columns(target: ProjectTarget, set_id: int, columns: Sequence[str],
                where: Sequence[Condition | str] = ()) -> dict[str, np.ndarray]:
    """A few columns of the matching items, whole (for plots: a million floats is 4 MB)."""
    with project_store(target) as (_project, store):
        item_set = store.get_set(set_id)
        return item_set.to_numpy(list(columns), parse_conditions(where))


def run_sets(target: ProjectTarget, run_ref: int | str) -> list[tuple[OutputInfo, SetDetail]]:
    """A run's set outputs with their sets' columns and properties."""
    with project_store(target) as (_project, store):
        run = store.runs.get(run_ref)
        outputs = [OutputInfo.of(output) for output in store.outputs.list(run.id)]
    return [(output, describe_set(target, output.set_id)) for output in outputs if output.set_id is not None]


def item(target: ProjectTarget, set_id: int, item_id: int, columns: Sequence[str] | None = None) -> dict[str, Any]:
    """One item of a set by its id (NotFoundError when the set has none)."""
    page = query_set(target, set_id, [Between("id", float(item_id), float(item_id))], columns, limit=1)
    if not page.items:
        raise NotFoundError(f"set {set_id} has no item {item_id}")
    return page.items[0]
