"""Fuzzing the STAR reader and the RELION particle conversion.

Random text, random bytes, documents built from STAR's grammar with hostile values (5,000
digits, huge and non-finite numbers, quotes, comments, unicode), and RELION particle files
with one value, column or block spoiled: each read either returns well-formed blocks or
raises our own error naming the file and the line, block or column at fault.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from fuzz_support import FUZZ, our_error_or_value
from hypothesis import event, given
from hypothesis import strategies as st

from orchestrator.em.errors import EmFormatError, StarFormatError
from orchestrator.em.relion import star_to_particles
from orchestrator.em.star import StarFile, read_star

PLACE = re.compile(r"line \d+|byte \d+|data_\S*")

# Values as they appear in STAR files, and as they should not.
numbers = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(300, 6000).map(lambda n: "9" * n),
    st.sampled_from(["1e999", "-1e999", "inf", "-inf", "nan", "1_000", "0x10", "+", "-", ".", "1e", "٣"]),
)
words = st.text(
    st.sampled_from(list("abcXYZ019_.@/-+#'\" \té∂😀\x00\r")), min_size=0, max_size=12
)
values = st.one_of(numbers, words, words.map(lambda w: f"'{w}'"), words.map(lambda w: f'"{w}"'))
labels = st.sampled_from(["_rlnImageName", "_rlnCoordinateX", "_rlnVoltage", "_rlnA", "_x", "_", "_rlnA extra"])


@st.composite
def star_lines(draw: st.DrawFn) -> list[str]:
    """A document built from STAR's pieces in a random order (often valid, often not)."""
    lines: list[str] = ["data_particles"] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["data", "loop", "label", "row", "pair", "comment", "blank", "junk"]))
        if kind == "data":
            lines.append("data_" + draw(st.sampled_from(["", "particles", "optics", "x", "x y"])))
        elif kind == "loop":
            lines.append(draw(st.sampled_from(["loop_", "loop_ x", " loop_"])))
        elif kind == "label":
            lines.append(draw(labels) + draw(st.sampled_from(["", " #1", " # 2"])))
        elif kind == "row":
            lines.append(" ".join(draw(st.lists(values, min_size=0, max_size=4))))
        elif kind == "pair":
            lines.append(f"{draw(labels)} {draw(values)}")
        elif kind == "comment":
            lines.append("# " + draw(words))
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", "  ", "\t"])))
        else:
            lines.append(draw(words))
    return lines


@st.composite
def star_loops(draw: st.DrawFn) -> list[str]:
    """One loop whose rows have the right number of values, each value hostile or not."""
    n_columns = draw(st.integers(1, 4))
    lines = ["data_particles", "", "loop_"] + [f"_rlnC{i} #{i}" for i in range(n_columns)]
    for _ in range(draw(st.integers(0, 5))):
        row = [draw(values) or "''" for _ in range(n_columns)]
        lines.append(" ".join(row) if draw(st.integers(0, 9)) else "")
    return lines


def _check_star(path: Path) -> StarFile | StarFormatError:
    outcome = our_error_or_value(lambda: read_star(path), StarFormatError, [str(path)])
    if isinstance(outcome, StarFormatError):
        assert PLACE.search(str(outcome)), f"message names no line, byte or block: {outcome}"
        event("refused")
        return outcome
    event("read")
    for name, block in outcome.items():
        if name in outcome.loops:
            lengths = {len(column) for column in block.values()}
            assert len(lengths) <= 1, f"data_{name}: columns of different lengths {lengths}"
            assert all(column.dtype.kind in "ifU" for column in block.values())
        else:
            assert all(isinstance(value, int | float | str) for value in block.values())
    return outcome


@FUZZ
@given(lines=star_lines(), newline=st.sampled_from(["\n", "\r\n"]))
def test_star_documents_from_the_grammar(tmp_path: Path, lines: list[str], newline: str) -> None:
    path = tmp_path / "fuzz.star"
    path.write_bytes(newline.join(lines).encode("utf-8", "surrogatepass"))
    _check_star(path)


@FUZZ
@given(lines=star_loops())
def test_star_loops_with_hostile_values(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "loop.star"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    _check_star(path)


@FUZZ
@given(text=st.text(max_size=300))
def test_random_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "random.star"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _check_star(path)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bytes.star"
    path.write_bytes(b"data_x\nloop_\n_rlnA\n" + data)
    _check_star(path)


def test_a_value_of_5000_digits_is_an_error_naming_the_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "digits.star"
    path.write_text("data_x\n_rlnA 1\n_rlnB " + "9" * 5000 + "\n")
    error = our_error_or_value(lambda: read_star(path), StarFormatError, [str(path), "line 3", "_rlnB"])
    assert isinstance(error, StarFormatError)
    path.write_text("data_x\nloop_\n_rlnA\n_rlnB\n1 2\n\n3 " + "9" * 5000 + "\n")
    error = our_error_or_value(lambda: read_star(path), StarFormatError, [str(path), "line 7", "_rlnB"])
    assert isinstance(error, StarFormatError)


def test_a_written_infinity_is_kept_and_only_an_overflow_refused(tmp_path: Path) -> None:
    path = tmp_path / "inf.star"
    for plain in (True, False):  # the pandas path and our tokenizer (a quoted value elsewhere)
        other = "a" if plain else "'a b'"
        path.write_text(f"data_x\nloop_\n_rlnA\n_rlnB\ninf {other}\n-Infinity {other}\n1.5 {other}\n")
        assert read_star(path)["x"]["rlnA"].tolist() == [np.inf, -np.inf, 1.5]
        path.write_text(f"data_x\nloop_\n_rlnA\n_rlnB\ninf {other}\n\n-1e999 {other}\n")
        error = our_error_or_value(lambda: read_star(path), StarFormatError, [str(path), "line 7", "_rlnA", "-1e999"])
        assert isinstance(error, StarFormatError)
    path.write_text("data_x\n_rlnA inf\n_rlnB 1e400\n")
    error = our_error_or_value(lambda: read_star(path), StarFormatError, [str(path), "line 3", "_rlnB"])
    assert isinstance(error, StarFormatError)


# ---------------------------------------------------------------- RELION particle files

OPTICS_LABELS = ["rlnOpticsGroup", "rlnOpticsGroupName", "rlnVoltage", "rlnSphericalAberration",
                 "rlnAmplitudeContrast", "rlnImagePixelSize", "rlnImageSize"]
PARTICLE_LABELS = ["rlnImageName", "rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnDefocusU",
                   "rlnAngleRot", "rlnClassNumber", "rlnRandomSubset", "rlnOpticsGroup", "rlnOriginXAngst",
                   "rlnMicrographId", "rlnImageId", "rlnCtfMaxResolution"]


def _particle_file(rows: int) -> dict[str, dict[str, list[str]]]:
    optics = {"rlnOpticsGroup": ["1", "2"], "rlnOpticsGroupName": ["g1", "g2"], "rlnVoltage": ["300", "200"],
              "rlnSphericalAberration": ["2.7", "0.01"], "rlnAmplitudeContrast": ["0.1", "0.07"],
              "rlnImagePixelSize": ["1.06", "0.83"], "rlnImageSize": ["64", "64"]}
    particles = {
        "rlnImageName": [f"{i + 1:06d}@Extract/stack.mrcs" for i in range(rows)],
        "rlnMicrographName": [f"mic_{i % 3}.mrc" for i in range(rows)],
        "rlnCoordinateX": [f"{10.5 * i}" for i in range(rows)],
        "rlnCoordinateY": [f"{20.25 * i}" for i in range(rows)],
        "rlnDefocusU": ["15000.0"] * rows,
        "rlnAngleRot": [f"{i * 7.5}" for i in range(rows)],
        "rlnClassNumber": [str(i % 3 + 1) for i in range(rows)],
        "rlnRandomSubset": [str(i % 2 + 1) for i in range(rows)],
        "rlnOpticsGroup": [str(i % 2 + 1) for i in range(rows)],
        "rlnOriginXAngst": ["1.5"] * rows,
        "rlnMicrographId": [str(i % 3 + 1) for i in range(rows)],
        "rlnImageId": [str(i + 1) for i in range(rows)],
        "rlnCtfMaxResolution": ["3.5"] * rows,
    }
    return {"optics": optics, "particles": particles}


def _render(blocks: dict[str, dict[str, list[str]]]) -> str:
    text = []
    for name, columns in blocks.items():
        text.append(f"\ndata_{name}\n\nloop_")
        text.extend(f"_{label} #{i}" for i, label in enumerate(columns, start=1))
        text.extend(" ".join(row) for row in zip(*columns.values(), strict=True))
    return "\n".join(text) + "\n"


hostile = st.one_of(
    numbers,
    st.sampled_from(["", "abc", "0", "-1", "99999999999", "1.5", "1e300", "nan", "inf", "000000@", "@x.mrcs",
                     "0@x.mrcs", "-3@x.mrcs", "4294967297@x.mrcs", "99999999999999999999999@x.mrcs",
                     "²@x.mrcs", "١٢@x.mrcs", "12@", "x@y@z", "'a b'", "#", "data_"]),
    st.integers(1, 6000).map(lambda n: "1" * n + "@x.mrcs"),
)


@st.composite
def spoiled_particle_files(draw: st.DrawFn) -> tuple[dict[str, dict[str, list[str]]], str]:
    """A valid RELION 3.1 particle file with one thing spoiled; returns it and the label at fault."""
    blocks = _particle_file(draw(st.integers(1, 4)))
    how = draw(st.sampled_from(["value", "value", "value", "drop_column", "drop_block", "rename_block"]))
    block = draw(st.sampled_from(["optics", "particles"]))
    label = draw(st.sampled_from(OPTICS_LABELS if block == "optics" else PARTICLE_LABELS))
    if how == "value":
        column = blocks[block][label]
        column[draw(st.integers(0, len(column) - 1))] = draw(hostile).replace(" ", "_") or "''"
        return blocks, label
    if how == "drop_column":
        del blocks[block][label]
        return blocks, label
    if how == "drop_block":
        del blocks[block]
        return blocks, f"data_{block}"
    blocks[f"{block}_x"] = blocks.pop(block)
    return blocks, f"data_{block}"


@FUZZ
@given(spoiled=spoiled_particle_files())
def test_spoiled_relion_particle_files(tmp_path: Path, spoiled: tuple[dict[str, dict[str, list[str]]], str]) -> None:
    blocks, at_fault = spoiled
    path = tmp_path / "particles.star"
    path.write_text(_render(blocks), encoding="utf-8")
    outcome = our_error_or_value(lambda: star_to_particles(path), EmFormatError, [str(path)])
    if isinstance(outcome, EmFormatError):
        event("refused")
        message = str(outcome)
        assert at_fault in message or PLACE.search(message), f"message names neither {at_fault} nor a line: {message}"
        return
    event("read")
    columns, optics = outcome
    assert len({len(values) for values in columns.values()}) == 1
    assert all(group.group >= 1 for group in optics)
    assert (columns["image_index"] >= 0).all()
    written_infinity = "inf" in path.read_text().lower()
    for name, values in columns.items():
        if values.dtype.kind == "f" and not written_infinity:  # no finite number overflowed its field
            assert not np.isinf(values).any(), name


def test_huge_image_index_names_the_file_and_column(tmp_path: Path) -> None:
    blocks = _particle_file(2)
    blocks["particles"]["rlnImageName"][1] = "99999999999999999999999@Extract/stack.mrcs"
    path = tmp_path / "particles.star"
    path.write_text(_render(blocks))
    error = our_error_or_value(lambda: star_to_particles(path), EmFormatError, [str(path), "rlnImageName"])
    assert isinstance(error, EmFormatError)


@FUZZ
@given(name=st.text(min_size=1, max_size=300))
def test_any_file_name_gives_a_star_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    for read in (read_star, star_to_particles):
        outcome = our_error_or_value(lambda read=read: read(path), EmFormatError, [])
        assert isinstance(outcome, EmFormatError)
        assert str(path) in str(outcome) or repr(str(path)) in str(outcome), str(outcome)
