"""Fuzzing RELION image names (``000123@stack.mrcs``): huge, negative, empty and unicode indices.

A name either parses to a 1-based int32 index and a non-empty path, or is refused with
:class:`RelionConversionError` quoting the name (and, for a column, its row); formatting and
parsing are inverse on every valid pair.
"""

from __future__ import annotations

import numpy as np
from fuzz_support import FUZZ, our_error_or_value
from hypothesis import event, given
from hypothesis import strategies as st

from orchestrator.em.errors import RelionConversionError
from orchestrator.em.image_names import image_name, image_names, parse_image_name, parse_image_names

INT32_MAX = 2**31 - 1

indices = st.one_of(
    st.integers(1, 999999).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.integers(1, 40).map(lambda n: "0" * n),
    st.integers(1, 40).map(lambda n: "0" * n + "1"),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.sampled_from(["", " 1", "1 ", "+1", "1.0", "1e3", "²", "١٢", "１２", "0x1", "1_0", "2147483647", "2147483648"]),
    st.text(max_size=8),
)
paths = st.one_of(st.sampled_from(["stack.mrcs", "Extract/job012/a b.mrcs", "", "@", "x@y"]), st.text(max_size=20))
names = st.one_of(st.builds(lambda i, p: f"{i}@{p}", indices, paths), st.text(max_size=30))


def _quoted(name: str) -> str:
    """How a message quotes a name: whole, or its first 40 characters when it is long."""
    return repr(name) if len(name) <= 80 else repr(name[:40])


def _check_parsed(name: str, index: int, path: str) -> None:
    assert 1 <= index <= INT32_MAX, (name, index)
    assert path, name
    assert image_name(index, path).endswith(f"@{path}") or "@" not in name


@FUZZ
@given(name=names)
def test_single_names_parse_or_are_refused_by_name(name: str) -> None:
    outcome = our_error_or_value(lambda: parse_image_name(name), RelionConversionError, ["image name"])
    if isinstance(outcome, RelionConversionError):
        event("refused")
        assert _quoted(name) in str(outcome), str(outcome)
        return
    event("parsed")
    _check_parsed(name, *outcome)
    if "@" in name:
        index_text = name.partition("@")[0]
        assert index_text.isascii() and index_text.isdigit() and int(index_text) == outcome[0]


@FUZZ
@given(column=st.lists(names, min_size=1, max_size=6), valid_prefix=st.integers(0, 3))
def test_name_columns_agree_with_single_names(column: list[str], valid_prefix: int) -> None:
    # numpy's str arrays drop trailing NULs: compare with the names the column really holds
    column = [str(name) for name in np.array([f"{i + 1:06d}@ok.mrcs" for i in range(valid_prefix)] + column)]
    outcome = our_error_or_value(lambda: parse_image_names(np.array(column)), RelionConversionError, ["row "])
    if isinstance(outcome, RelionConversionError):
        event("refused")
        row = int(str(outcome).split("row ", 1)[1].split(":", 1)[0])
        # the row named is the first one the single-name parser refuses too
        assert _quoted(column[row - 1]) in str(outcome)
        for name in column[: row - 1]:
            assert not isinstance(our_error_or_value(lambda n=name: parse_image_name(n), RelionConversionError, []),
                                  RelionConversionError)
        refused = our_error_or_value(lambda: parse_image_name(column[row - 1]), RelionConversionError, [])
        assert isinstance(refused, RelionConversionError)
        return
    event("parsed")
    numbers, stacks = outcome
    assert numbers.dtype == np.int32
    for name, index, path in zip(column, numbers.tolist(), stacks.tolist(), strict=True):
        assert parse_image_name(name) == (index, path)


@FUZZ
@given(index=st.integers(-(2**40), 2**40),
       path=st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=20))
def test_formatting_round_trips_or_refuses(index: int, path: str) -> None:
    outcome = our_error_or_value(lambda: image_name(index, path), RelionConversionError, [str(index)])
    if isinstance(outcome, RelionConversionError):
        assert index < 1
        return
    parsed = our_error_or_value(lambda: parse_image_name(outcome), RelionConversionError, ["image name"])
    if index > INT32_MAX:
        assert isinstance(parsed, RelionConversionError)
    else:
        assert parsed == (index, path)
        assert parse_image_names(image_names(np.array([index]), np.array([path]))) is not None
