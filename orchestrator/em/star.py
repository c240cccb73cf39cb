"""STAR files as RELION 3.1 writes them: data blocks holding either one loop or key-value pairs.

:func:`read_star` returns a :class:`StarFile`, a plain ``dict`` from block name (``"particles"``
for ``data_particles``, ``""`` for a bare ``data_``) to the block's content:

* a loop becomes a dict of column name (without the leading ``_``) -> 1D numpy array, typed
  ``int64`` or ``float64`` where every value parses as a number and ``str`` otherwise;
* a key-value block becomes a dict of name -> ``int``, ``float`` or ``str``;
* an empty block becomes ``{}``.

Large loops (a million particle rows) are parsed by pandas' C tokenizer; lines with quotes or
comments go through a small tokenizer of our own, which is also what locates the line of any
error, so a malformed file is reported with its file name, block and line number.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import warnings
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.em.errors import StarFormatError
from orchestrator.em.star_writer import write_star

__all__ = ["StarFile", "StarFormatError", "read_star", "write_star", "RELION_STRING_LABELS"]

Scalar = int | float | str

# Labels whose values are names even when they look like numbers ("001.mrc" would be safe,
# but a micrograph called "0012" must not come back as the integer 12).
RELION_STRING_LABELS = frozenset(
    {
        "rlnImageName",
        "rlnImageOriginalName",
        "rlnMicrographName",
        "rlnMicrographNameNoDW",
        "rlnMicrographMovieName",
        "rlnMicrographGainName",
        "rlnMicrographDefectFile",
        "rlnMicrographMetadata",
        "rlnOpticsGroupName",
        "rlnCtfImage",
        "rlnCtfPowerSpectrum",
        "rlnGroupName",
        "rlnOriginalParticleName",
        "rlnReferenceImage",
        "rlnMtfFileName",
        "rlnMaskName",
        "rlnSymmetryGroup",
    }
)

# Searched from the start of a line: a literal "\n" first lets the regex engine skip ahead,
# where a "^" pattern would be tried at every character of a 200 MB loop.
_LOOP_END = re.compile(r"\n[ \t]*(?:data_|loop_|_)")
_LOOP_END_HERE = re.compile(r"[ \t]*(?:data_|loop_|_)")
_FIRST_ROW = re.compile(r"\S[^\n]*")
# A quoted value ends at a quote followed by whitespace or the end of the line (STAR rule),
# so 'it's' is one value; '#' starts a comment only at the start of a token.
_TOKEN = re.compile(r"""(?:'(.*?)'|"(.*?)")(?=\s|$)|(#)|(\S+)""")
_INT = re.compile(r"[+-]?\d+")
_INFINITY_WORDS = frozenset({"inf", "infinity"})
_INFINITY = re.compile(r"[+-]?(?:inf|infinity)", re.IGNORECASE)


class StarFile(dict[str, dict[str, Any]]):
    """The blocks of one STAR file, in file order; looking up a missing block is an error.

    ``loops`` names the blocks that were loops; ``block_lines`` gives each block's line number,
    for messages about the content of a block found later (a missing column, say).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self.loops: set[str] = set()
        self.block_lines: dict[str, int] = {}

    def __missing__(self, name: str) -> dict[str, Any]:
        present = ", ".join(f"data_{b}" for b in self) or "none"
        raise StarFormatError(f"{self.path}: no data_{name} block (blocks present: {present})")

    def loop(self, name: str) -> dict[str, np.ndarray]:
        """The columns of loop block ``name``; an error if it is missing or holds key-value pairs."""
        block = self[name]
        if name not in self.loops and block:
            raise StarFormatError(
                f"{self.path}, data_{name} (line {self.block_lines[name]}): expected a loop, "
                "found key-value pairs"
            )
        return block

    def pairs(self, name: str) -> dict[str, Scalar]:
        """The key-value pairs of block ``name``; an error if it is missing or is a loop."""
        block = self[name]
        if name in self.loops:
            raise StarFormatError(
                f"{self.path}, data_{name} (line {self.block_lines[name]}): expected key-value pairs, "
                "found a loop"
            )
        return block

    def column(self, block: str, name: str) -> np.ndarray:
        """One column of a loop block, with an error naming the file, block and column if absent."""
        columns = self.loop(block)
        if name not in columns:
            raise StarFormatError(
                f"{self.path}, data_{block} (line {self.block_lines[block]}): no column _{name}"
            )
        return columns[name]


def read_star(
    path: str | os.PathLike[str], *, str_columns: Collection[str] = RELION_STRING_LABELS
) -> StarFile:
    """Read every block of a STAR file.

    Columns named in ``str_columns`` are kept as strings whatever they look like. Raises
    :class:`StarFormatError` (file, block, line) for malformed content and for a file that
    does not exist or cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise StarFormatError(f"{path}: file does not exist") from err
    except UnicodeDecodeError as err:
        raise StarFormatError(f"{path}: not a STAR file (not UTF-8 text: byte {err.start})") from err
    except OSError as err:
        raise StarFormatError(f"{path}: cannot be read: {err.strerror or err}") from err
    except ValueError as err:  # a NUL in the name: no file can have it
        raise StarFormatError(f"{str(path)!r}: not a valid file name ({err})") from err
    return _Parser(path, text, frozenset(str_columns)).parse()


class _Parser:
    """One pass over the text; ``pos`` is the start of line number ``line_no`` (1-based)."""

    def __init__(self, path: Path, text: str, str_columns: frozenset[str]) -> None:
        self.path = path
        self.text = text
        self.str_columns = str_columns
        self.star = StarFile(path)
        self.block: str | None = None

    def error(self, line_no: int, message: str) -> StarFormatError:
        where = f"data_{self.block}, " if self.block is not None else ""
        return StarFormatError(f"{self.path}, {where}line {line_no}: {message}")

    def parse(self) -> StarFile:
        text, pos, line_no = self.text, 0, 0
        while pos < len(text):
            line, next_pos = _line_at(text, pos)
            line_no += 1
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                pos = next_pos
            elif stripped.startswith("data_"):
                self.start_block(stripped, line_no)
                pos = next_pos
            elif self.block is None:
                raise self.error(line_no, f"expected a data_ block, found {stripped[:40]!r}")
            elif stripped.startswith("loop_"):
                if _tokens(stripped, self, line_no) != ["loop_"]:
                    raise self.error(line_no, f"unexpected text after loop_: {stripped[:40]!r}")
                pos, line_no = self.read_loop(next_pos, line_no)
            elif stripped.startswith("_"):
                self.read_pair(stripped, line_no)
                pos = next_pos
            else:
                raise self.error(line_no, f"value {stripped[:40]!r} outside a loop")
        return self.star

    def start_block(self, stripped: str, line_no: int) -> None:
        name = stripped.split()[0][len("data_") :]
        self.block = None  # the error below is about the file, not the previous block
        if name in self.star:
            raise self.error(line_no, f"block data_{name} appears twice")
        self.block = name
        self.star[name] = {}
        self.star.block_lines[name] = line_no

    def read_pair(self, stripped: str, line_no: int) -> None:
        block = self.star[self.block]  # type: ignore[index]
        if self.block in self.star.loops:
            raise self.error(line_no, "key-value pair after a loop in the same block")
        tokens = _tokens(stripped, self, line_no)
        key = tokens[0][1:]
        if len(tokens) != 2:
            what = "has no value" if len(tokens) == 1 else f"has {len(tokens) - 1} values"
            raise self.error(line_no, f"key _{key} {what}")
        if key in block:
            raise self.error(line_no, f"key _{key} appears twice")
        block[key] = tokens[1] if key in self.str_columns else self.scalar(tokens[1], key, line_no)

    def scalar(self, token: str, key: str, line_no: int) -> Scalar:
        """A pair's value typed like loop columns; a number beyond float64 is an error, not inf."""
        value = _scalar(token)
        if isinstance(value, float) and math.isinf(value) and not _INFINITY.fullmatch(token):
            raise self.error(line_no, f"key _{key}: {_out_of_range(token)}")
        return value

    def read_loop(self, pos: int, loop_line: int) -> tuple[int, int]:
        """Read a loop's column labels and rows; return the position and number of the last line."""
        if self.star[self.block]:  # type: ignore[index]
            what = "a second loop" if self.block in self.star.loops else "a loop after key-value pairs"
            raise self.error(loop_line, f"{what} in the same block (one table per block)")
        text, line_no, columns = self.text, loop_line, []
        while pos < len(text):
            line, next_pos = _line_at(text, pos)
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                if not stripped.startswith("_"):
                    break
                tokens = _tokens(stripped, self, line_no + 1)
                if len(tokens) != 1:
                    raise self.error(line_no + 1, f"unexpected text after loop label {tokens[0]}")
                if tokens[0][1:] in columns:
                    raise self.error(line_no + 1, f"column {tokens[0]} appears twice")
                columns.append(tokens[0][1:])
            pos, line_no = next_pos, line_no + 1
        if not columns:
            raise self.error(loop_line, "loop_ has no columns")
        if _LOOP_END_HERE.match(text, pos):
            end = pos
        else:
            end_match = _LOOP_END.search(text, pos)
            end = end_match.start() + 1 if end_match else len(text)
        body = text[pos:end]
        self.star[self.block] = self.parse_rows(body, line_no + 1, columns)  # type: ignore[index]
        self.star.loops.add(self.block)  # type: ignore[arg-type]
        return end, line_no + body.count("\n")

    def parse_rows(self, body: str, first_line: int, columns: list[str]) -> dict[str, np.ndarray]:
        """Rows of a loop: pandas when the lines are plain, our tokenizer when they are not."""
        if _FIRST_ROW.search(body) is None:
            return {name: np.array([], dtype=str) for name in columns}
        # str.__contains__ is a fast memchr-like scan; a regex class would walk every character.
        if not ('"' in body or "'" in body or "#" in body):
            frame = self.fast_rows(body, first_line, columns)
            if frame is not None:
                typed = {name: self.typed(frame[name].to_numpy(), name) for name in columns}
                self.check_in_range(typed, body, first_line, lambda name: self.fast_texts(body, columns, name))
                return typed
        texts = self.slow_rows(body, first_line, columns)
        typed = {name: self.typed(values, name) for name, values in texts.items()}
        self.check_in_range(typed, body, first_line, texts.__getitem__)
        return typed

    def check_in_range(
        self,
        typed: dict[str, np.ndarray],
        body: str,
        first_line: int,
        texts_of: Callable[[str], np.ndarray],
    ) -> None:
        """Refuse numbers that overflowed float64 (``1e999``, 5,000 digits) instead of keeping inf.

        Only a column that holds an infinity pays for a second look at its text, where a
        written ``inf`` (which RELION may write) is told from a number too large to store.
        """
        for name, values in typed.items():
            if values.dtype.kind != "f" or not np.isinf(values).any():
                continue
            texts = np.char.lower(np.char.lstrip(texts_of(name).astype(str), "+-"))
            overflowed = np.isinf(values) & ~np.isin(texts, list(_INFINITY_WORDS))
            if overflowed.any():
                row = int(np.flatnonzero(overflowed)[0])
                line_no, tokens = _row_at(body, first_line, row, self)
                token = tokens[list(typed).index(name)]
                raise self.error(line_no, f"column _{name}: {_out_of_range(token)}")

    def fast_texts(self, body: str, columns: list[str], name: str) -> np.ndarray:
        """One column of a plain loop as text (pandas again, for the rare column holding inf)."""
        frame = pd.read_csv(
            io.BytesIO(body.encode("utf-8")),
            sep=r"\s+",
            header=None,
            names=columns,
            usecols=[name],
            index_col=False,
            dtype=str,
            engine="c",
            na_filter=False,
            quoting=csv.QUOTE_NONE,
        )
        return frame[name].to_numpy(dtype=str)

    def fast_rows(self, body: str, first_line: int, columns: list[str]) -> pd.DataFrame | None:
        """Parse with pandas; None when a row has the wrong field count (slow_rows says where)."""
        first = _FIRST_ROW.search(body)
        if first is None or len(first.group().split()) != len(columns):
            return None
        as_str = [name for name in columns if name in self.str_columns]
        for _ in range(2):  # a second pass only when pandas took a column for booleans
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", pd.errors.ParserWarning)
                    frame = pd.read_csv(
                        io.BytesIO(body.encode("utf-8")),  # StringIO of 200 MB costs seconds
                        sep=r"\s+",
                        header=None,
                        names=columns,
                        index_col=False,
                        dtype=dict.fromkeys(as_str, str),
                        engine="c",
                        na_filter=False,
                        quoting=csv.QUOTE_NONE,
                    )
            except (pd.errors.ParserError, pd.errors.ParserWarning):
                return None
            booleans = [name for name in columns if frame[name].dtype == np.bool_]
            if not booleans:
                break
            as_str += booleans
        # A short row leaves its missing trailing fields empty; unquoted values never are.
        last = frame[columns[-1]]
        if last.dtype.kind not in "iuf" and (last == "").any():
            return None
        return frame

    def slow_rows(self, body: str, first_line: int, columns: list[str]) -> dict[str, np.ndarray]:
        """The rows' values as text, column by column (typed by the caller)."""
        values: list[list[str]] = [[] for _ in columns]
        for offset, line in enumerate(body.split("\n")):
            tokens = _tokens(line, self, first_line + offset)
            if not tokens:
                continue
            if len(tokens) != len(columns):
                raise self.error(
                    first_line + offset,
                    f"row has {len(tokens)} fields but the loop has {len(columns)} columns",
                )
            for column, token in zip(values, tokens, strict=True):
                column.append(token)
        return {name: np.array(vals, dtype=str) for name, vals in zip(columns, values, strict=True)}

    def typed(self, values: np.ndarray, name: str) -> np.ndarray:
        """int64 or float64 where every value is a number, str otherwise (or when asked)."""
        if values.dtype.kind in "iuf":
            return values
        strings = values.astype(str)
        if name in self.str_columns:
            return strings
        for numeric in (np.int64, np.float64):
            try:
                with np.errstate(over="ignore"):  # an overflow to inf is refused by check_in_range
                    return strings.astype(numeric)
            except (ValueError, OverflowError):
                continue
        return strings


def _line_at(text: str, pos: int) -> tuple[str, int]:
    """The line starting at ``pos`` and the position of the next line."""
    end = text.find("\n", pos)
    if end < 0:
        return text[pos:], len(text)
    return text[pos:end], end + 1


def _row_at(body: str, first_line: int, row: int, parser: _Parser) -> tuple[int, list[str]]:
    """Line number and values of the ``row``-th row (0-based) of a loop body; for messages."""
    for offset, line in enumerate(body.split("\n")):
        tokens = _tokens(line, parser, first_line + offset)
        if tokens:
            if row == 0:
                return first_line + offset, tokens
            row -= 1
    raise AssertionError(f"row {row} beyond the loop")  # pragma: no cover - rows come from this body


def _out_of_range(token: str) -> str:
    shown = token if len(token) <= 24 else f"{token[:12]}...{token[-6:]} ({len(token)} characters)"
    return f"the number {shown} is out of range (larger than a 64-bit float holds)"


def _tokens(line: str, parser: _Parser, line_no: int) -> list[str]:
    """Split one line into values, dropping a trailing comment and the quotes around values."""
    tokens: list[str] = []
    for match in _TOKEN.finditer(line):
        single, double, comment, bare = match.groups()
        if comment is not None:
            break
        if bare is not None:
            if bare[0] in "'\"":
                raise parser.error(line_no, f"unterminated quoted string {bare[:40]}")
            tokens.append(bare)
        else:
            tokens.append(single if single is not None else double)
    return tokens


def _scalar(token: str) -> Scalar:
    """A key-value pair's value, typed like loop columns."""
    if _INT.fullmatch(token):
        try:
            return int(token)
        except ValueError:  # more digits than Python converts (4,300): a float, or out of range
            pass
    if "_" not in token:  # Python's float() accepts "1_0", STAR does not mean a number by it
        try:
            return float(token)
        except ValueError:
            pass
    return token
