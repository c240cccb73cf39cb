"""Set files: an exported set answers like the stored one; pending sets round-trip; every
malformed file is a SetFileError naming it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.protocol import PendingSet
from orchestrator.store import Between, Equals, OneOf, ProjectStore
from orchestrator.store.set_files import (
    ExportedSet,
    SetFileError,
    export_set,
    load_pending_set,
    save_pending_set,
)
from orchestrator.store.sets import ItemSet


@pytest.fixture
def stored(tmp_path: Path) -> ItemSet:
    store = ProjectStore.create(tmp_path / "store.sqlite", "proj")
    run = store.runs.create("testkit.noop", name="a")
    item_set = store.create_set("particles", "Particle", run_id=run.id, chunk_size=300,
                                properties={"acquisition": {"voltage_kv": 300.0, "cs_mm": 2.7,
                                                            "amplitude_contrast": 0.1, "pixel_size_a": 1.1},
                                            "box_size": 64, "note": "ünïcode"})
    rng = np.random.default_rng(3)
    n = 1000
    item_set.append_columns({
        "image_index": np.arange(n) % 20 + 1,
        "image_path": np.array([f"Extract/mic_{i // 20:04d}_é.mrcs" for i in range(n)], dtype=object),
        "micrograph_id": np.arange(n) // 20 + 1,
        "defocus_u": rng.uniform(8000, 30000, n),
        "rot": rng.uniform(-180, 180, n),
        "class_id": np.arange(n) % 7 + 1,
        "enabled": np.arange(n) % 5 != 0,
    })
    item_set.close()
    return item_set


def test_an_exported_set_answers_like_the_stored_one(stored: ItemSet, tmp_path: Path) -> None:
    path = export_set(stored, tmp_path / "exported" / "set_1.npz")
    assert [p.name for p in path.parent.iterdir()] == ["set_1.npz"]  # no temporary file left
    exported = ExportedSet(path)
    assert (exported.id, exported.name, exported.item_type, exported.size) == (stored.id, "particles", "Particle",
                                                                                 1000)
    assert exported.properties == stored.properties and exported.acquisition == stored.acquisition
    queries: list[tuple[Any, ...]] = [
        ((), {}),
        ((["id", "image_path", "defocus_u"], [Equals("micrograph_id", 7)]), {}),
        ((None,), {"class_id": [2, 5], "defocus_u": (10000, 20000)}),
        ((["id", "rot"], [Between("rot", None, 0.0), OneOf("image_path", ("Extract/mic_0003_é.mrcs",))]), {}),
        ((["image_path"],), {"enabled": False}),
        ((["id"],), {"micrograph_id": 999}),
    ]
    for args, kwargs in queries:
        want, got = stored.to_numpy(*args, **kwargs), exported.to_numpy(*args, **kwargs)
        assert set(got) == set(want)
        for name in want:
            assert got[name].dtype == want[name].dtype, name
            np.testing.assert_array_equal(got[name], want[name])
    objects = [repr(o) for o in exported.iter_objects(micrograph_id=3)]  # repr: NaN fields compare equal
    assert len(objects) == 20 and objects == [repr(o) for o in stored.iter_objects(micrograph_id=3)]
    assert len(list(exported)) == 1000
    assert exported.count() == 1000 and exported.count(class_id=3) == stored.count(class_id=3) == 143
    assert exported.count(Between("defocus_u", 20000, None)) == stored.count(Between("defocus_u", 20000, None))
    np.testing.assert_array_equal(exported.unique("class_id"), np.arange(1, 8))
    assert list(exported.unique("image_path"))[:2] == ["Extract/mic_0000_é.mrcs", "Extract/mic_0001_é.mrcs"]
    changed = exported.to_numpy(["rot"])
    changed["rot"][:] = 0  # callers get their own arrays
    assert exported.to_numpy(["rot"])["rot"].any()
    with pytest.raises(Exception, match="has no column\\(s\\) defocus; columns: id,"):
        exported.to_numpy(["defocus"])


def test_an_empty_set_exports_and_reads_back(tmp_path: Path) -> None:
    store = ProjectStore.create(tmp_path / "store.sqlite", "proj")
    empty = store.create_set("nothing", "Micrograph")
    exported = ExportedSet(export_set(empty, tmp_path / "set.npz"))
    assert exported.size == 0 and exported.to_numpy(["path"])["path"].dtype == object
    assert list(exported.iter_objects()) == [] and exported.count(path="x") == 0


def test_a_pending_set_round_trips_with_only_its_columns(tmp_path: Path) -> None:
    pending = PendingSet("classes2d", "ClassAverage",
                         {"id": [1, 2, 3], "image_path": ["classes.mrcs"] * 3, "size": [10, 0, 4]},
                         {"particles": {"$set": "particles"}, "resolution": float("nan")})
    path = save_pending_set(pending, tmp_path / "attempt")
    assert path == tmp_path / "attempt" / "pending_set_classes2d.npz"
    back = load_pending_set(path)
    assert (back.name, back.item_type, back.size) == ("classes2d", "ClassAverage", 3)
    assert set(back.columns) == {"id", "image_path", "size"}  # missing columns take defaults when created
    np.testing.assert_array_equal(back.columns["size"], [10, 0, 4])
    assert list(back.columns["image_path"]) == ["classes.mrcs"] * 3
    assert back.properties["particles"] == {"$set": "particles"} and np.isnan(back.properties["resolution"])
    with pytest.raises(SetFileError, match="holds a set a step registered, not an exported set"):
        ExportedSet(path)


def rewrite(path: Path, change: dict[str, Any] | None = None, drop: str | None = None,
            header: Any = None) -> Path:
    """A copy of a set file with entries replaced or removed (an attacker's or a disk's doing)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    if header is not None:
        arrays["header"] = np.array(header if isinstance(header, str) else json.dumps(header))
    arrays.update(change or {})
    if drop:
        arrays.pop(drop)
    target = path.with_name(f"bad_{len(list(path.parent.glob('bad_*.npz')))}.npz")
    np.savez(target, **arrays)
    return target


def test_every_malformed_file_is_an_error_naming_it(stored: ItemSet, tmp_path: Path) -> None:
    good = export_set(stored, tmp_path / "set.npz")
    with np.load(good, allow_pickle=False) as npz:
        header = json.loads(str(npz["header"]))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    pickled = tmp_path / "pickled.npz"
    with zipfile.ZipFile(pickled, "w") as archive:  # an object array needs a pickle to load
        with archive.open("header.npy", "w") as handle:
            np.lib.format.write_array(handle, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases: list[tuple[Path, str]] = [
        (tmp_path / "missing.npz", "no such set file"),
        (garbage, "not a set file"),
        (truncated, "not a set file"),
        (pickled, "entry 'header' cannot be read (Object arrays cannot be loaded when allow_pickle=False)"),
        (rewrite(good, drop="header"), "not a set file (no 'header' entry)"),
        (rewrite(good, header="{not json"), "the header is not JSON"),
        (rewrite(good, header={**header, "format": "other"}), "its header's format is not 'em-orchestrator-set'"),
        (rewrite(good, header={**header, "version": 9}), "set file version 9; this code reads version 1"),
        (rewrite(good, header={k: v for k, v in header.items() if k != "size"}), "header key 'size' must be an"),
        (rewrite(good, header={**header, "size": -1}), "header key 'size' must be >= 0"),
        (rewrite(good, header={**header, "item_type": "Banana"}), "unknown item type 'Banana'"),
        (rewrite(good, header={**header, "columns": ["id", "colour"]}), "unknown column(s) ['colour']"),
        (rewrite(good, drop="strings.image_path"), "lists column 'image_path' but the file has no"),
    ]
    for path, message in cases:
        with pytest.raises(SetFileError) as caught:
            ExportedSet(path).to_numpy()
        assert str(caught.value).startswith(str(path)) and message in str(caught.value), str(caught.value)
    column_cases: list[tuple[dict[str, Any], str]] = [
        ({"column.rot": np.zeros(1000, dtype=np.float64)}, "entry 'column.rot' must be 1000 values of float32"),
        ({"column.rot": np.zeros(10, dtype=np.float32)}, "entry 'column.rot' must be 1000 values of float32"),
        ({"column.image_path": np.full(1000, 99, dtype=np.int32)}, "holds codes outside 0..49"),
        ({"strings.image_path": np.zeros((2, 2))}, "'strings.image_path' must be a unicode array"),
    ]
    for change, message in column_cases:
        bad = rewrite(good, change)
        with pytest.raises(SetFileError, match=message.replace("(", "\\(").replace(")", "\\)")):
            ExportedSet(bad).to_numpy()
    with pytest.raises(SetFileError, match="holds exported set"):
        load_pending_set(good)
