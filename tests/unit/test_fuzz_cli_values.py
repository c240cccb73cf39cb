"""Fuzzing what users type on the command line: where-clauses on sets and protocol params.

``orch sets P --where micrograph_id=abc`` and ``orch run P proto key=value`` hand text to the
store and to the protocols. Whatever the text, the answer is a result or our own error naming
the column (or param) and the value: never a raw ``ValueError`` from ``int("abc")``, an
``OverflowError`` from a 20-digit id reaching SQLite, or a silent "no match" because
``micrograph_name=0012`` was read as the number 12.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fuzz_support import FUZZ, our_error_or_value
from hypothesis import event, given
from hypothesis import strategies as st

from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.objects.params import BoolParam, EnumParam, FloatParam, IntParam, PathParam, PointerParam, StrParam
from orchestrator.plugins import PluginRegistry, discover
from orchestrator.store import ItemSet, ProjectStore
from orchestrator.store.set_query import Between, Equals, parse_condition

N_ITEMS = 100
COLUMNS = ["id", "micrograph_id", "micrograph_name", "class_id", "defocus_u", "enabled", "optics_group", "subset",
           "image_index", "nope"]
texts = st.one_of(
    st.sampled_from(["1", "0", "-1", "12", "0012", "abc", "", " ", "1.5", "1e3", "1e999", "nan", "inf", "-inf", "true",
                     "yes", "2", "0x10", "1_000", "٣", "²", "99999999999", "2147483648", "-2147483649", "9" * 5000,
                     "1,2", "1,abc", ",", "1..2", "..3", "abc..", "1..", "..", "mic_0001.mrc", "é", "a b",
                     "9223372036854775808"]),
    st.text(max_size=8),
)
operators = st.sampled_from(["=", "==", "<=", ">=", "=<", "<", "", " = "])


@pytest.fixture(scope="module")
def particles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ItemSet]:
    store = ProjectStore.create(str(tmp_path_factory.mktemp("sets") / "store.sqlite"), "proj")
    item_set = store.create_set("picked", "Particle", chunk_size=32)
    mic = np.arange(N_ITEMS) // 10 + 1
    item_set.append_columns({
        "micrograph_id": mic,
        "micrograph_name": np.array([f"{m:04d}" for m in mic], dtype=object),
        "class_id": np.arange(N_ITEMS) % 7 + 1,
        "defocus_u": np.linspace(10000, 20000, N_ITEMS),
    })
    yield item_set
    store.close()


@FUZZ
@given(column=st.sampled_from(COLUMNS), operator=operators, value=texts)
def test_where_clauses_answer_or_name_the_column_and_value(
    particles: ItemSet, column: str, operator: str, value: str
) -> None:
    text = f"{column}{operator}{value}"
    condition = our_error_or_value(lambda: parse_condition(text), UsageError, ["where-clause"])
    if isinstance(condition, UsageError):
        event("refused when parsed")
        return
    # the column is what the parser read ("id" + "x=1" is the column idx)
    outcome = our_error_or_value(lambda: particles.to_numpy(["id"], [condition]), UsageError,
                                 ["set 'picked'", condition.column])
    if isinstance(outcome, UsageError):
        event("refused by the column")
        message = str(outcome)
        known = condition.column in particles.schema.by_name
        if known and not isinstance(condition, Between):  # the value at fault is quoted
            values = [condition.value] if isinstance(condition, Equals) else list(condition.values)
            assert any(repr(v)[:20] in message for v in values), message
        return
    event("answered")
    ids = outcome["id"]
    assert len(ids) == len(set(ids.tolist())) <= N_ITEMS


@pytest.mark.parametrize("text, rows", [
    ("micrograph_id=3", 10), ("micrograph_name=0003", 10), ("micrograph_name=3", 0), ("class_id=1,2", 30),
    ("enabled=true", N_ITEMS), ("enabled=no", 0), ("micrograph_id=1e1", 10), ("defocus_u<=10000", 1),
])
def test_typed_values_match_as_the_column_stores_them(particles: ItemSet, text: str, rows: int) -> None:
    assert len(particles.to_numpy(["id"], [parse_condition(text)])["id"]) == rows


@pytest.mark.parametrize("text, named", [
    ("micrograph_id=abc", ["micrograph_id", "'abc'", "int32"]),
    ("micrograph_id=99999999999", ["micrograph_id", "'99999999999'", "out of range"]),
    ("class_id=1,abc", ["class_id", "'abc'"]),
    ("enabled=2", ["enabled", "'2'", "true or false"]),
    ("micrograph_name<=3", ["micrograph_name", "range"]),
    ("id=" + "9" * 5000, ["id", "characters"]),
])
def test_the_issue_cases_name_the_set_column_and_value(particles: ItemSet, text: str, named: list[str]) -> None:
    error = our_error_or_value(lambda: particles.to_numpy(["id"], [parse_condition(text)]), UsageError,
                               ["set 'picked' (Particle)", *named])
    assert isinstance(error, UsageError)


# ---------------------------------------------------------------- protocol params

@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    return discover()


PROTOCOLS = sorted(discover().protocols())
param_values = st.one_of(
    texts,  # what the CLI gives: always text
    st.none(), st.booleans(), st.integers(), st.integers(-(2**4000), 2**4000),
    st.floats(allow_nan=True, allow_infinity=True), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(["produce.files", "12.particles", "x" * 5000 + ".out", "~nosuchuser_orch/x", "/" + "x" * 5000,
                     "a\x00b", "../../etc", "0.files"]),
)


@FUZZ
@given(protocol=st.sampled_from(PROTOCOLS), data=st.data())
def test_protocol_params_are_coerced_or_refused_by_name(
    tmp_path: Path, registry: PluginRegistry, protocol: str, data: st.DataObject
) -> None:
    cls = registry.protocol(protocol)
    names = [param.name for param in cls.params] + ["nope"]
    raw = data.draw(st.dictionaries(st.sampled_from(names), param_values, max_size=4))
    outcome = our_error_or_value(lambda: cls.validate(raw, base_dir=tmp_path), OrchestratorError, [protocol])
    if isinstance(outcome, OrchestratorError):
        event("refused")
        message = str(outcome)
        assert "param '" in message, message
        return
    event("accepted")


hostile_texts = ["abc", "", " ", "1.5", "1e999", "nan", "inf", "9" * 5000, "-" + "9" * 5000, "٣", "true", "maybe",
                 "~nosuchuser_orch/x", "/" + "x" * 5000, "a\x00b", "x" * 5000 + ".out", "12.", ".x", "1.2.3"]


@pytest.mark.parametrize("param", [
    IntParam("box", min=16), FloatParam("sigma", min=0.0), BoolParam("flag"), StrParam("label", pattern=r"[a-z]+"),
    EnumParam("mode", choices=("fast", "accurate")), PathParam("movies", must_exist=True, path_type="dir"),
    PathParam("gain", path_type="file"), PointerParam("particles", type_name="SetOfParticles"),
], ids=lambda param: type(param).__name__)
def test_each_param_kind_refuses_hostile_text_by_name(tmp_path: Path, param: Any) -> None:
    for text in hostile_texts + [2**4000, -(2**4000), 2**63, float("inf"), float("nan"), [], {}]:
        def coerce_and_check(text: Any = text) -> list[str]:
            return param.check(param.coerce(text), base_dir=tmp_path)

        outcome = our_error_or_value(coerce_and_check, UsageError, [f"param '{param.name}'"])
        if isinstance(outcome, list):
            assert all(problem.startswith(f"param '{param.name}': ") for problem in outcome), outcome


@FUZZ
@given(items=st.lists(st.one_of(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["count", "", " ", "a b", "é"]),
                                          texts), texts), max_size=5))
def test_key_value_params_parse_or_name_the_item(items: list[str]) -> None:
    from orchestrator.cli.run_cmd import parse_params

    outcome = our_error_or_value(lambda: parse_params(items), UsageError, ["param "])
    if isinstance(outcome, dict):
        assert len(outcome) <= len(items)
        for key, value in outcome.items():
            assert key and key == key.strip() and any(item.partition("=")[2] == value for item in items)
