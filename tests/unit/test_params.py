"""Param declarations: coercion of CLI strings and JSON values, checks, messages, describe()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.objects.params import (
    BoolParam,
    EnumParam,
    FloatParam,
    IntParam,
    ParamDefinitionError,
    ParamValidationError,
    ParamValueError,
    PathParam,
    Pointer,
    PointerParam,
    StrParam,
)


@pytest.mark.parametrize(("raw", "expected"), [("5", 5), (" -3 ", -3), (7, 7), (12.0, 12), ("1_000", 1000)])
def test_int_coerces_strings_and_numbers(raw: object, expected: int) -> None:
    value = IntParam("box_size").coerce(raw)
    assert value == expected and type(value) is int


@pytest.mark.parametrize("raw", ["abc", "1.5", 1.5, True, "", [1]])
def test_int_error_names_param_and_value(raw: object) -> None:
    with pytest.raises(ParamValueError) as err:
        IntParam("box_size").coerce(raw)
    assert str(err.value) == f"param 'box_size': expected an integer, got {raw!r}"
    assert err.value.param == "box_size"
    assert isinstance(err.value, UsageError)


def test_float_coerces_and_rejects_non_finite() -> None:
    param = FloatParam("sigma")
    assert param.coerce("1e-3") == pytest.approx(0.001)
    assert param.coerce(2) == 2.0 and isinstance(param.coerce(2), float)
    for bad in ("nan", "inf", "x", False):
        with pytest.raises(ParamValueError, match=r"param 'sigma': expected a finite number"):
            param.coerce(bad)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("FALSE", False), ("yes", True), ("off", False), ("1", True), (0, False), (True, True)],
)
def test_bool_words(raw: object, expected: bool) -> None:
    assert BoolParam("flag").coerce(raw) is expected


def test_bool_rejects_other_words() -> None:
    with pytest.raises(ParamValueError, match=r"param 'flag': expected true or false, got 'maybe'"):
        BoolParam("flag").coerce("maybe")
    with pytest.raises(ParamValueError):
        BoolParam("flag").coerce(2)


def test_str_is_strict_and_checks_pattern() -> None:
    param = StrParam("symmetry", pattern=r"[cdCD]\d+|[oOiI]")
    assert param.coerce("c1") == "c1"
    with pytest.raises(ParamValueError, match="expected a string, got 3"):
        param.coerce(3)
    assert param.check("c4") == []
    assert param.check("x9") == ["param 'symmetry': 'x9' does not match the pattern '[cdCD]\\\\d+|[oOiI]'"]


def test_number_bounds_are_inclusive_and_named() -> None:
    param = IntParam("count", min=1, max=10)
    assert param.check(1) == [] and param.check(10) == []
    assert param.check(0) == ["param 'count': must be >= 1, got 0"]
    assert param.check(11) == ["param 'count': must be <= 10, got 11"]


def test_custom_validators_run_after_builtin_checks() -> None:
    def even(value: int) -> str | None:
        return None if value % 2 == 0 else f"must be even, got {value}"

    param = IntParam("box_size", min=16, validators=[even])
    assert param.check(64) == []
    assert param.check(65) == ["param 'box_size': must be even, got 65"]
    assert param.check(15) == [
        "param 'box_size': must be >= 16, got 15",
        "param 'box_size': must be even, got 15",
    ]


def test_enum_lists_choices_and_suggests() -> None:
    param = EnumParam("mode", choices=["fast", "accurate"])
    assert param.coerce("fast") == "fast"
    with pytest.raises(ParamValueError) as err:
        param.coerce("acurate")
    assert str(err.value) == (
        "param 'mode': expected one of 'fast', 'accurate', got 'acurate' (did you mean 'accurate'?)"
    )


def test_enum_needs_choices() -> None:
    with pytest.raises(ParamDefinitionError, match="EnumParam 'mode' needs"):
        EnumParam("mode")


def test_path_checks_existence_and_kind(tmp_path: Path) -> None:
    (tmp_path / "movie.tif").write_bytes(b"x")
    (tmp_path / "gain").mkdir()
    must_file = PathParam("gain_ref", must_exist=True, path_type="file")
    assert must_file.coerce("movie.tif") == Path("movie.tif")
    assert must_file.check(Path("movie.tif"), base_dir=tmp_path) == []
    assert must_file.check(Path("gain"), base_dir=tmp_path) == [
        f"param 'gain_ref': expected a file, got a directory: {tmp_path / 'gain'}"
    ]
    assert must_file.check(Path("nope.tif"), base_dir=tmp_path) == [
        f"param 'gain_ref': path does not exist: {tmp_path / 'nope.tif'}"
    ]
    assert PathParam("out").check(Path("nope"), base_dir=tmp_path) == []  # need not exist
    assert PathParam("d", path_type="dir").check(tmp_path / "movie.tif") != []
    assert PathParam("home").coerce("~/x") == Path.home() / "x"
    with pytest.raises(ParamValueError, match="expected a path"):
        PathParam("out").coerce("  ")


@pytest.mark.parametrize(
    ("text", "run", "output"),
    [("12.particles", 12, "particles"), ("motioncorr.micrographs", "motioncorr", "micrographs"),
     ("my.run.name.volume", "my.run.name", "volume")],
)  # fmt: skip
def test_pointer_parse(text: str, run: int | str, output: str) -> None:
    pointer = PointerParam("input", type_name="SetOfParticles").coerce(text)
    assert pointer == Pointer(run, output)
    assert str(pointer) == text


@pytest.mark.parametrize("text", ["particles", "12.", ".x", "12.3d", "a b.c"])
def test_pointer_rejects_bad_forms(text: str) -> None:
    with pytest.raises(ParamValueError, match=r"param 'input': expected RUN.OUTPUT \(e.g. '12.particles'\)"):
        PointerParam("input", type_name="SetOfParticles").coerce(text)


def test_pointer_needs_type_name() -> None:
    with pytest.raises(ParamDefinitionError, match="needs type_name"):
        PointerParam("input")


def test_bad_default_is_a_definition_error() -> None:
    with pytest.raises(ParamDefinitionError, match=r"bad default for param 'count': expected an integer"):
        IntParam("count", default="many")
    with pytest.raises(ParamDefinitionError, match="not a Python identifier"):
        IntParam("box size")


def test_default_is_coerced_and_required_flag() -> None:
    assert IntParam("n", default="4").default == 4
    assert IntParam("n").required
    assert not IntParam("n", default=1).required
    assert not IntParam("n", optional=True).required
    assert IntParam("n", optional=True).coerce(None) is None
    with pytest.raises(ParamValueError, match="expected a value, got nothing"):
        IntParam("n").coerce(None)


def test_describe_is_json_ready() -> None:
    def is_even(params: object) -> bool:
        return True

    described = [
        IntParam("n", default=2, min=0, label="Count", help="how many").describe(),
        PathParam("p", default="a/b", must_exist=True).describe(),
        PointerParam("i", type_name="Volume", condition="n > 1").describe(),
        EnumParam("m", choices=("a", "b"), default="a", condition=is_even).describe(),
    ]
    json.dumps(described)
    assert described[0] == {
        "name": "n", "kind": "int", "label": "Count", "help": "how many", "default": 2,
        "required": False, "optional": False, "condition": None, "min": 0, "max": None,
    }  # fmt: skip
    assert described[1]["default"] == "a/b" and described[1]["must_exist"] is True
    assert described[2]["type_name"] == "Volume" and described[2]["required"] is True
    assert described[2]["condition"] == "n > 1"
    assert described[3]["condition"] == "<function is_even>" and described[3]["choices"] == ["a", "b"]


def test_validation_error_lists_every_problem() -> None:
    err = ParamValidationError("x.y", ["param 'a': bad", "param 'b': worse"])
    assert isinstance(err, OrchestratorError)
    assert err.problems == ["param 'a': bad", "param 'b': worse"]
    assert (
        str(err)
        == "invalid params for protocol 'x.y' (2 problems):\n  - param 'a': bad\n  - param 'b': worse"
    )
