"""A project's sets (particles, micrographs, ...): list them, describe one, query and page its items.

Conditions are the store's typed conditions (``Equals``, ``OneOf``, ``Between``) or their
command-line form (``micrograph_id=12``, ``class_id=1,2``, ``defocus_u=15000..20000``,
``ctf_resolution<=4``); an equality on an indexed column reads only the rows the index names.
A page is read block by block, so paging through millions of items keeps memory flat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.app.serialize import Record
from orchestrator.errors import NotFoundError, UsageError
from orchestrator.store import ItemSet, ProjectStore
from orchestrator.store.set_query import Condition, parse_condition

DEFAULT_PAGE_SIZE = 20


@dataclass(frozen=True)
class SetInfo(Record):
    """A set as listed: what it holds, how many, and whether items may still arrive."""

    id: int
    run_id: int | None
    name: str
    item_type: str
    size: int
    stream_state: str


@dataclass(frozen=True)
class SetDetail(SetInfo):
    """A set with its columns and properties (acquisition, box size, ...)."""

    columns: list[str]
    properties: dict[str, Any]


@dataclass(frozen=True)
class SetPage(Record):
    """Some items of a set: ``items[i]`` maps each of ``columns`` to a value. ``next_offset`` is
    where the next page starts, None after the last matching item."""

    set: SetInfo
    columns: list[str]
    items: list[dict[str, Any]]
    offset: int
    limit: int
    next_offset: int | None


def list_sets(target: ProjectTarget, run_ref: int | str | None = None) -> list[SetInfo]:
    """The project's sets (or one run's), in the order they were made."""
    with project_store(target) as (_project, store):
        run_ids = {run.id for run in store.runs.list()}
        run_id = store.runs.get(run_ref).id if run_ref is not None else None
        return [SetInfo(**row) for row in store.list_sets(run_id)
                if row["run_id"] is None or row["run_id"] in run_ids]


def describe_set(target: ProjectTarget, set_id: int) -> SetDetail:
    """One set with its columns and properties."""
    with project_store(target) as (_project, store):
        item_set = _open_set(store, set_id)
        return SetDetail(item_set.id, item_set.run_id, item_set.name, item_set.item_type, item_set.size,
                         item_set.stream_state.value, list(item_set.schema.names), dict(item_set.properties))


def query_set(target: ProjectTarget, set_id: int, where: Sequence[Condition | str] = (),
              columns: Sequence[str] | None = None, *, offset: int = 0,
              limit: int = DEFAULT_PAGE_SIZE) -> SetPage:
    """The matching items from the ``offset``-th on, at most ``limit`` of them (every column by
    default). A condition or column the set does not have is a UsageError naming its columns."""
    if offset < 0 or limit < 0:
        raise UsageError(f"offset {offset}, limit {limit}: both must be 0 or more")
    conditions = parse_conditions(where)
    with project_store(target) as (_project, store):
        item_set = _open_set(store, set_id)
        names = list(columns) if columns else list(item_set.schema.names)
        skip, more = offset, False
        items: list[dict[str, Any]] = []
        for block in item_set.iter_blocks(names, conditions):
            count = len(block[names[0]]) if names else 0
            if skip >= count:
                skip -= count
                continue
            for index in range(skip, count):
                if len(items) == limit:
                    more = True
                    break
                items.append({name: _plain(block[name][index]) for name in names})
            skip = 0
            if more:
                break
        info = SetInfo(item_set.id, item_set.run_id, item_set.name, item_set.item_type, item_set.size,
                       item_set.stream_state.value)
    return SetPage(info, names, items, offset, limit, offset + len(items) if more else None)


def count_items(target: ProjectTarget, set_id: int, where: Sequence[Condition | str] = ()) -> int:
    """How many items match (the set's size, without a scan, when there is no condition)."""
    conditions = parse_conditions(where)
    with project_store(target) as (_project, store):
        return _open_set(store, set_id).count(*conditions)


def parse_conditions(where: Sequence[Condition | str]) -> list[Condition]:
    """Typed conditions, parsing the command-line form (a UsageError names a malformed one)."""
    return [parse_condition(item) if isinstance(item, str) else item for item in where]


def _open_set(store: ProjectStore, set_id: int) -> ItemSet:
    """The set, if it belongs to this project (a PostgreSQL store may hold several projects)."""
    item_set = store.get_set(set_id)
    if item_set.run_id is not None:
        try:
            store.runs.get(item_set.run_id)
        except NotFoundError:
            raise NotFoundError(f"set {set_id} does not exist in this project") from None
    return item_set


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (JSON-ready); strings and None as they are."""
    return value.item() if hasattr(value, "item") else value
