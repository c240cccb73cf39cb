"""STAR reading and writing: round trips, RELION-written files, quoting, and errors with line numbers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from infra.services import require

from orchestrator.em import star_rows
from orchestrator.em.errors import StarFormatError
from orchestrator.em.star import read_star, write_star

RELION_DATA = Path(__file__).parent.parent / "data" / "relion"
WRITERS = [pytest.param(False, id="python"), pytest.param(True, id="arrow")]


def write_text(tmp_path: Path, text: str, name: str = "in.star") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def blocks_for_round_trip() -> dict[str, dict]:
    rng = np.random.default_rng(3)
    return {
        "general": {
            "rlnFinalResolution": 3.25,
            "rlnNrClasses": 4,
            "rlnSymmetryGroup": "C1",
            "note": "two words",
        },
        "optics": {
            "rlnOpticsGroupName": np.array(["opticsGroup1", "opticsGroup2"]),
            "rlnOpticsGroup": np.array([1, 2]),
            "rlnVoltage": np.array([300.0, 200.0]),
            "rlnImagePixelSize": np.array([1.06, 0.83]),
        },
        "empty": {},
        "particles": {
            "rlnImageName": np.array([f"{i:06d}@Extract/job007/stack.mrcs" for i in range(1, 8)]),
            "rlnMicrographName": np.array(["0012", "0012", "a b.mrc", "", "#x", "_y", "data_z"]),
            "rlnCoordinateX": rng.uniform(0, 4000, 7).astype(np.float32),
            "rlnAngleRot": rng.uniform(-180, 180, 7),  # float64
            "rlnDefocusAngle": np.array([0, 1, 2, 3, 4, 5, -0.0], dtype=np.float32),  # all whole
            "rlnTiny": np.array([1e-30, -2.5e-8, 1e20, np.inf, -np.inf, 0.1, 7.0]),
            "rlnClassNumber": np.arange(1, 8, dtype=np.int32),
            "rlnIsFlipped": np.array([True, False] * 3 + [True]),
        },
    }


@pytest.mark.parametrize("use_arrow", WRITERS)
def test_round_trip_of_pairs_loops_and_empty_blocks(tmp_path: Path, use_arrow: bool) -> None:
    require(not use_arrow or importlib.util.find_spec("pyarrow"), "pyarrow not installed (a dependency: make venv)")
    blocks = blocks_for_round_trip()
    path = write_star(tmp_path / "out.star", blocks, use_arrow=use_arrow)
    star = read_star(path)
    assert list(star) == ["general", "optics", "empty", "particles"]
    assert star.pairs("general") == blocks["general"]
    assert star["empty"] == {}
    assert star.loops == {"optics", "particles"}
    for name in ("optics", "particles"):
        for label, written in blocks[name].items():
            read = star.loop(name)[label]
            if written.dtype.kind in "UO":
                assert read.dtype.kind == "U" and read.tolist() == written.tolist(), label
            elif written.dtype.kind == "f":
                assert read.dtype == np.float64, label
                assert np.array_equal(read.astype(written.dtype), written), label  # bit for bit
            else:
                assert read.dtype == np.int64 and np.array_equal(read, written.astype(np.int64)), label


def test_float32_round_trip_is_exact_for_many_values(tmp_path: Path) -> None:
    values = np.random.default_rng(5).standard_normal(5000).astype(np.float32) * np.float32(1e3)
    for use_arrow in (False, None):
        path = write_star(tmp_path / "f.star", {"t": {"rlnValue": values}}, use_arrow=use_arrow)
        assert np.array_equal(read_star(path).loop("t")["rlnValue"].astype(np.float32), values)


def test_rows_are_written_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(star_rows, "CHUNK_ROWS", 7)
    ids = np.arange(100)
    path = write_star(
        tmp_path / "c.star", {"t": {"rlnImageId": ids, "rlnName": ids.astype(str)}}, use_arrow=False
    )
    loop = read_star(path).loop("t")
    assert np.array_equal(loop["rlnImageId"], ids)
    assert loop["rlnName"].tolist() == ids.tolist()  # not one of RELION's string labels: typed as int


def test_relion_layout_with_version_comment(tmp_path: Path) -> None:
    path = write_star(tmp_path / "o.star", {"optics": {"rlnVoltage": np.array([300.0])}})
    assert path.read_text().splitlines()[:7] == [
        "",
        "# version 30001",
        "",
        "data_optics",
        "",
        "loop_",
        "_rlnVoltage #1",
    ]


def test_comments_quotes_and_odd_spacing(tmp_path: Path) -> None:
    path = write_text(
        tmp_path,
        """# leading comment
data_  # a block with no name

_rlnKey   'a value with spaces'   # trailing comment
_rlnOther "it's"
_rlnQuoted 'don't'
_rlnHash "#not a comment"

data_loop
loop_
_rlnA   #1
# a comment between labels
_rlnB #2
_rlnC #3

  1  "x y"    2.5
# a comment between rows
\t2\t'#z'   3.5\t
3 plain -1e-3
""",
    )
    star = read_star(path)
    assert star.pairs("") == {
        "rlnKey": "a value with spaces",
        "rlnOther": "it's",
        "rlnQuoted": "don't",
        "rlnHash": "#not a comment",
    }
    loop = star.loop("loop")
    assert loop["rlnA"].tolist() == [1, 2, 3] and loop["rlnA"].dtype == np.int64
    assert loop["rlnB"].tolist() == ["x y", "#z", "plain"]
    assert loop["rlnC"].tolist() == [2.5, 3.5, -0.001]


def test_string_labels_stay_strings_and_other_columns_are_typed(tmp_path: Path) -> None:
    path = write_text(
        tmp_path,
        "data_p\nloop_\n_rlnMicrographName\n_rlnFlag\n_rlnValue\n_rlnWord\n"
        "0012 True nan 1\n0013 False inf x\n",
    )
    loop = read_star(path).loop("p")
    assert loop["rlnMicrographName"].tolist() == ["0012", "0013"]
    assert loop["rlnFlag"].tolist() == ["True", "False"]  # not pandas' booleans
    assert (
        loop["rlnValue"].dtype == np.float64
        and np.isnan(loop["rlnValue"][0])
        and np.isinf(loop["rlnValue"][1])
    )
    assert loop["rlnWord"].tolist() == ["1", "x"]


def test_loop_without_rows_and_blocks_back_to_back(tmp_path: Path) -> None:
    path = write_text(tmp_path, "data_a\nloop_\n_rlnX\n_rlnY\ndata_b\n_rlnZ 1\n")
    star = read_star(path)
    assert {k: v.size for k, v in star.loop("a").items()} == {"rlnX": 0, "rlnY": 0}
    assert star.pairs("b") == {"rlnZ": 1}


def test_reads_relion_postprocess_file() -> None:
    star = read_star(RELION_DATA / "postprocess.star")
    assert list(star) == ["general", "fsc", "guinier"]
    general = star.pairs("general")
    assert general["rlnFinalResolution"] == 8.0
    assert general["rlnMaskName"] == "mask.mrc"
    assert general["rlnUnfilteredMapHalf1"] == "half1.mrc"
    fsc = star.loop("fsc")
    assert fsc["rlnSpectralIndex"].tolist() == list(range(13))
    assert fsc["rlnAngstromResolution"][1] == 48.0
    assert star.loop("guinier")["rlnResolutionSquared"][1] == pytest.approx(4.340278e-04)


def test_reads_relion_particle_file_with_optics() -> None:
    star = read_star(RELION_DATA / "proj.star")
    optics, particles = star.loop("optics"), star.loop("particles")
    assert optics["rlnOpticsGroupName"].tolist() == ["opticsGroup1"]
    assert optics["rlnImageSize"].tolist() == [24] and optics["rlnVoltage"].tolist() == [300.0]
    assert particles["rlnImageName"][0] == "000001@proj.mrcs"
    assert particles["rlnAnglePsi"].tolist() == [0.0, -30.0, 60.0, 170.0, -90.0, 15.5]
    assert particles["rlnClassNumber"].dtype == np.int64


def test_relion_files_round_trip_through_our_writer(tmp_path: Path) -> None:
    for name in ("proj.star", "postprocess.star", "relion31_converted.star"):
        original = read_star(RELION_DATA / name)
        again = read_star(write_star(tmp_path / name, original))
        assert list(again) == list(original)
        for block in original:
            assert again[block].keys() == original[block].keys()
            for key, value in original[block].items():
                assert np.array_equal(again[block][key], value), (name, block, key)


# --- malformed input: file, block and line in every message ---------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "data_p\nloop_\n_rlnA\n_rlnB\n1 2\n3 4 5\n",
            r"data_p, line 6: row has 3 fields but the loop has 2 columns",
        ),
        (
            "data_p\nloop_\n_rlnA\n_rlnB\n1 2\n3\n5 6\n",
            r"data_p, line 6: row has 1 fields but the loop has 2 columns",
        ),
        ("data_p\nloop_\n_rlnA\n_rlnB\n1 2 3\n", r"data_p, line 5: row has 3 fields"),
        ("data_p\n\nloop_\n\ndata_q\n", r"data_p, line 3: loop_ has no columns"),
        ("data_p\nloop_\n_rlnA\n'1\n", r"data_p, line 4: unterminated quoted string '1"),
        ("_rlnA 1\n", r"line 1: expected a data_ block"),
        ("data_p\n_rlnA\n", r"data_p, line 2: key _rlnA has no value"),
        ("data_p\n_rlnA 1 2\n", r"data_p, line 2: key _rlnA has 2 values"),
        ("data_p\n_rlnA 1\n_rlnA 2\n", r"data_p, line 3: key _rlnA appears twice"),
        ("data_p\n_rlnA 1\nloop_\n_rlnB\n", r"data_p, line 3: a loop after key-value pairs"),
        ("data_p\nloop_\n_rlnB\n1\nloop_\n_rlnC\n", r"data_p, line 5: a second loop"),
        ("data_p\nloop_\n_rlnB\n1\n_rlnC 2\n", r"data_p, line 5: key-value pair after a loop"),
        ("data_p\nloop_\n_rlnB\n_rlnB\n", r"data_p, line 4: column _rlnB appears twice"),
        ("data_p\n\ndata_p\n", r"line 3: block data_p appears twice"),
        ("data_p\n42\n", r"data_p, line 2: value '42' outside a loop"),
    ],
)
def test_malformed_star_names_file_block_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = write_text(tmp_path, text, name="bad.star")
    with pytest.raises(StarFormatError, match=rf"^{path}, {message}"):
        read_star(path)


def test_bad_row_in_a_large_loop_gets_its_line_number(tmp_path: Path) -> None:
    rows = [f"{i} {i * 0.5} name{i}" for i in range(3000)]
    rows[2499] = "2499 1249.5"  # too short: pandas would fill it in silently
    path = write_text(
        tmp_path, "# c\ndata_big\n\nloop_\n_rlnA #1\n_rlnB #2\n_rlnC #3\n" + "\n".join(rows) + "\n"
    )
    with pytest.raises(StarFormatError, match=r"data_big, line 2507: row has 2 fields but the loop has 3"):
        read_star(path)
    rows[2499] = "2499 1249.5 x y"
    path.write_text("data_big\nloop_\n_rlnA\n_rlnB\n_rlnC\n" + "\n".join(rows) + "\n")
    with pytest.raises(StarFormatError, match=r"data_big, line 2505: row has 4 fields"):
        read_star(path)


def test_missing_block_and_column_are_named(tmp_path: Path) -> None:
    star = read_star(write_text(tmp_path, "data_optics\nloop_\n_rlnVoltage\n300\n", name="x.star"))
    with pytest.raises(
        StarFormatError, match=r"x\.star: no data_particles block \(blocks present: data_optics\)"
    ):
        star.loop("particles")
    with pytest.raises(StarFormatError, match=r"x\.star, data_optics \(line 1\): no column _rlnImageSize"):
        star.column("optics", "rlnImageSize")
    with pytest.raises(StarFormatError, match="expected key-value pairs, found a loop"):
        star.pairs("optics")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(StarFormatError, match=r"nope\.star: file does not exist"):
        read_star(tmp_path / "nope.star")
    binary = tmp_path / "map.star"
    binary.write_bytes(b"data_\n\xff\xfe\x00")
    with pytest.raises(StarFormatError, match=r"map\.star: not a STAR file \(not UTF-8"):
        read_star(binary)


def test_writer_rejects_what_it_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "w.star"
    with pytest.raises(StarFormatError, match=r"data_b: mixes columns \(x\) and single values \(y\)"):
        write_star(path, {"b": {"x": np.arange(2), "y": 3}})
    with pytest.raises(StarFormatError, match=r"columns differ in length \(x=2, y=3\)"):
        write_star(path, {"b": {"x": np.arange(2), "y": np.arange(3)}})
    with pytest.raises(StarFormatError, match="spans lines"):
        write_star(path, {"b": {"x": np.array(["a\nb"])}})
    with pytest.raises(StarFormatError, match="label '_x' must be"):
        write_star(path, {"b": {"_x": 1}})
    assert not path.exists() and list(tmp_path.iterdir()) == []
