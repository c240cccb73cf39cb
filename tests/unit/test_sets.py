"""Columnar sets: bulk append, objects and numpy read-back, where-clauses, stream state."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.errors import NotFoundError, UsageError
from orchestrator.objects.em import CTF, Alignment, Coordinate, Micrograph, Particle
from orchestrator.store import Between, OneOf, ProjectStore, StreamState


@pytest.fixture
def store(store_url: str) -> ProjectStore:
    created = ProjectStore.create(store_url, "proj")
    yield created
    created.close()


def particle_columns(n: int, start_mic: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mic = np.arange(n) // 10 + start_mic
    return {
        "image_index": np.arange(n) % 10 + 1,
        "image_path": np.array([f"Extract/mic_{m:04d}.mrcs" for m in mic], dtype=object),
        "micrograph_id": mic,
        "micrograph_name": np.array([f"mic_{m:04d}.mrc" for m in mic], dtype=object),
        "coord_x": rng.uniform(0, 4096, n), "coord_y": rng.uniform(0, 4096, n),
        "defocus_u": rng.uniform(8000, 30000, n), "defocus_v": rng.uniform(8000, 30000, n),
        "defocus_angle": rng.uniform(0, 180, n),
        "rot": rng.uniform(-180, 180, n), "tilt": rng.uniform(0, 180, n), "psi": rng.uniform(-180, 180, n),
        "shift_x": rng.uniform(-5, 5, n), "shift_y": rng.uniform(-5, 5, n),
        "class_id": np.arange(n) % 7 + 1,
    }


def test_columns_round_trip_across_chunks(store: ProjectStore) -> None:
    pset = store.create_set("particles", "Particle", chunk_size=64)
    cols = particle_columns(1000)
    assert pset.append_columns(cols) == 1000
    assert pset.size == 1000 and len(pset) == 1000
    back = pset.to_numpy()
    np.testing.assert_array_equal(back["id"], np.arange(1, 1001))
    np.testing.assert_allclose(back["defocus_u"], cols["defocus_u"].astype(np.float32))
    np.testing.assert_array_equal(back["image_path"], cols["image_path"])
    assert back["rot"].dtype == np.float32 and back["micrograph_id"].dtype == np.int32
    assert back["enabled"].all() and (back["optics_group"] == 1).all()


def test_appends_fill_the_last_chunk_then_add_chunks(store: ProjectStore) -> None:
    pset = store.create_set("particles", "Particle", chunk_size=100)
    for i in range(7):  # 7 x 45 items: partial chunks are topped up, ids stay consecutive
        pset.append_columns(particle_columns(45, start_mic=1000 * i, seed=i))
    back = pset.to_numpy(["id", "micrograph_id"])
    np.testing.assert_array_equal(back["id"], np.arange(1, 316))
    assert pset.size == 315
    assert len(pset.where(micrograph_id=2001)) == 10


def test_iterating_yields_independent_objects(store: ProjectStore) -> None:
    pset = store.create_set("particles", "Particle", chunk_size=16)
    pset.append_columns(particle_columns(50))
    items = list(pset)
    assert len(items) == 50 and isinstance(items[0], Particle)
    items[0].ctf.defocus_u = -1.0
    items[0].alignment.rot = 999.0
    assert items[1].ctf.defocus_u != -1.0 and items[1].alignment.rot != 999.0
    assert items[0].ctf is not items[1].ctf
    assert pset.get(1).ctf.defocus_u != -1.0  # the stored set is untouched


def test_objects_round_trip(store: ProjectStore) -> None:
    pset = store.create_set("particles", "Particle")
    original = [Particle(id=0, image_index=i + 1, image_path="s.mrcs", micrograph_id=3, micrograph_name="m.mrc",
                         coordinate=Coordinate(10.0 * i, 20.0), ctf=CTF(15000.0, 14000.0, 30.0, 3.5, 0.8),
                         alignment=Alignment(10.0, 20.0, 30.0, 1.5, -2.5), class_id=i % 2 + 1, subset=1)
                for i in range(5)]
    pset.append(original)
    back = list(pset)
    assert [p.id for p in back] == [1, 2, 3, 4, 5]
    p = back[4]
    assert (p.image_index, p.image_path, p.micrograph_id, p.micrograph_name) == (5, "s.mrcs", 3, "m.mrc")
    assert p.coordinate.x == 40.0 and p.ctf.defocus_v == 14000.0 and p.ctf.resolution == 3.5
    assert (p.alignment.rot, p.alignment.shift_y, p.class_id, p.subset) == (10.0, -2.5, 1, 1)
    np.testing.assert_allclose(p.alignment.matrix()[:3, 3], [1.5, -2.5, 0.0])


def test_where_clauses_indexed_range_and_membership(store: ProjectStore) -> None:
    pset = store.create_set("particles", "Particle", chunk_size=128)
    cols = particle_columns(2000)
    pset.append_columns(cols)
    mic = pset.where(micrograph_id=57)
    assert [p.micrograph_id for p in mic] == [57] * 10
    expected = (cols["defocus_u"].astype(np.float32) >= 15000) & (cols["defocus_u"].astype(np.float32) <= 16000)
    in_range = pset.to_numpy(["id"], [Between("defocus_u", 15000, 16000)])["id"]
    np.testing.assert_array_equal(in_range, np.flatnonzero(expected) + 1)
    both = pset.count(OneOf("class_id", (2, 3)), micrograph_id=[1, 2, 3])
    assert both == int(np.isin(cols["class_id"][:30], [2, 3]).sum())
    assert pset.count(micrograph_id=999_999) == 0
    np.testing.assert_array_equal(pset.unique("class_id"), np.arange(1, 8))


def test_stream_state_and_closed_sets_refuse_items(store: ProjectStore) -> None:
    pset = store.create_set("particles", "Particle")
    assert pset.stream_state is StreamState.OPEN
    pset.append_columns(particle_columns(5))
    pset.close()
    assert store.get_set(pset.id).stream_state is StreamState.CLOSED
    with pytest.raises(UsageError, match="closed"):
        pset.append_columns(particle_columns(5))
    assert pset.size == 5


def test_bad_columns_are_named(store: ProjectStore) -> None:
    pset = store.create_set("particles", "Particle")
    with pytest.raises(UsageError, match="unknown column.*defocus_w"):
        pset.append_columns({"defocus_w": [1.0]})
    with pytest.raises(UsageError, match="no column.*nope"):
        pset.to_numpy(["nope"])
    with pytest.raises(NotFoundError, match="no item with id 7"):
        pset.get(7)
    with pytest.raises(UsageError, match="unknown item type 'Thing'"):
        store.create_set("x", "Thing")


def test_micrographs_with_and_without_ctf(store: ProjectStore) -> None:
    mset = store.create_set("micrographs", "Micrograph", properties={"acquisition": {"pixel_size_a": 1.2}})
    mset.append([Micrograph(id=0, path="a.mrc"), Micrograph(id=0, path="b.mrc", movie_id=4,
                                                           ctf=CTF(12000.0, 11000.0, 45.0))])
    a, b = list(mset)
    assert a.ctf is None and a.movie_id is None
    assert b.ctf == CTF(12000.0, 11000.0, 45.0, None, None) or b.ctf.defocus_u == 12000.0
    assert b.movie_id == 4 and mset.acquisition.pixel_size_a == 1.2


def test_iteration_memory_stays_flat(tmp_path) -> None:  # noqa: ANN001
    """Iterating holds one chunk at a time: the traced peak is far below the whole set's."""
    import tracemalloc

    with ProjectStore.create(tmp_path / "s.sqlite", "p") as store:
        pset = store.create_set("particles", "Particle", chunk_size=1000)
        pset.append_columns(particle_columns(40_000))
        tracemalloc.start()
        count = sum(1 for _ in pset)
        _, streamed_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        tracemalloc.start()
        everything = list(pset)
        _, list_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert count == len(everything) == 40_000
    assert streamed_peak * 10 < list_peak, (streamed_peak, list_peak)
