"""Item ids of a set: 1 or more, unique in the set; a bad append names the set and the ids, and
changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from orchestrator.errors import UsageError
from orchestrator.store import ProjectStore
from orchestrator.store.set_codec import invalid_ids, listed_ids
from orchestrator.store.sets import ItemSet


@pytest.fixture
def store(store_url: str) -> Iterator[ProjectStore]:
    created = ProjectStore.create(store_url, "proj")
    yield created
    created.close()


@pytest.fixture
def picked(store: ProjectStore) -> ItemSet:
    item_set = store.create_set("picked", "Particle", chunk_size=8)
    item_set.append_columns({"id": np.arange(10, 30), "class_id": np.ones(20)})  # ids 10..29, three chunks
    return item_set


def append_ids(item_set: ItemSet, ids: list[int]) -> int:
    return item_set.append_columns({"id": np.array(ids), "class_id": np.full(len(ids), 2)})


def refused(item_set: ItemSet, ids: list[int]) -> str:
    size, ids_before = item_set.size, item_set.to_numpy(["id"])["id"]
    with pytest.raises(UsageError) as caught:
        append_ids(item_set, ids)
    # nothing of the refused batch is stored
    assert item_set.size == size
    np.testing.assert_array_equal(item_set.to_numpy(["id"])["id"], ids_before)
    message = str(caught.value)
    assert message.startswith("set 'picked' (Particle): "), message
    return message


@pytest.mark.parametrize("ids, named", [
    ([40, 0, 41], "item ids must be 1 or more (an id column of only zeros lets the set number the items), "
                  "got 0 (1 id)"),
    ([-5, 40, -1], "item ids must be 1 or more"),
    ([40, 41, 40, 42, 41], "ids given more than once in the items appended: 40, 41 (2 ids)"),
    ([5, 12], "ids already in the set: 12 (1 id)"),
    ([29, 30], "ids already in the set: 29 (1 id)"),
    ([31, 30, 17, 9, 25, 10], "ids already in the set: 10, 17, 25 (3 ids)"),
])
def test_bad_ids_are_refused_naming_the_set_and_the_ids(picked: ItemSet, ids: list[int], named: str) -> None:
    assert named in refused(picked, ids)


def test_negative_ids_are_all_listed(picked: ItemSet) -> None:
    assert "got -5, -1 (2 ids)" in refused(picked, [-5, 40, -1])


def test_new_ids_are_accepted_in_any_order_and_in_the_gaps(picked: ItemSet) -> None:
    assert append_ids(picked, [35, 31, 1, 9]) == 4  # below, between and above the stored ids
    assert append_ids(picked, [30, 32]) == 2
    assert "ids already in the set: 1, 9, 32" in refused(picked, [1, 9, 32, 33])
    # an id column of zeros lets the set number the items after the largest id it holds
    picked.append_columns({"class_id": np.full(3, 3)})
    ids = picked.to_numpy(["id"])["id"]
    assert sorted(ids.tolist()) == [1, 9, *range(10, 33), 35, 36, 37, 38]
    assert len(set(ids.tolist())) == len(ids) == picked.size


def test_ids_the_set_numbered_cannot_be_given_again(store: ProjectStore) -> None:
    item_set = store.create_set("numbered", "Micrograph")
    item_set.append_columns({"path": np.array(["a.mrc", "b.mrc"], dtype=object)})
    with pytest.raises(UsageError, match=r"set 'numbered' \(Micrograph\): ids already in the set: 2 \(1 id\)"):
        item_set.append_columns({"id": np.array([2, 3]), "path": np.array(["c.mrc", "d.mrc"], dtype=object)})


def test_invalid_ids_finds_repeats_only_when_out_of_order() -> None:
    nonpositive, repeated = invalid_ids(np.arange(1, 1_000_001))
    assert nonpositive.size == 0 and repeated.size == 0
    nonpositive, repeated = invalid_ids(np.array([7, 3, 0, 7, -2, 3, 3]))
    assert nonpositive.tolist() == [-2, 0] and repeated.tolist() == [3, 7]
    assert listed_ids(np.arange(1, 9)) == "1, 2, 3, 4, 5 and 3 more (8 ids)"
