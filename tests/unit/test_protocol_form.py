"""Protocol declarations and Protocol.validate: defaults, conditions, unknown params, binding."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestrator.protocol import (
    BoolParam,
    EnumParam,
    FloatParam,
    IntParam,
    OutputRef,
    ParamValidationError,
    PathParam,
    Pointer,
    PointerParam,
    Protocol,
    ProtocolDefinitionError,
    ProtocolError,
    ResolvedParams,
    StepGraph,
    StrParam,
)


def advanced_only(values: Mapping[str, Any]) -> bool:
    return values["mode"] == "accurate"


class Refine(Protocol):
    """Refine a map.

    Second paragraph of help.
    """

    name = "test.refine"
    label = "3D refinement"
    citations = ["@article{x, title={X}}"]
    params = [
        PointerParam("particles", type_name="SetOfParticles", help="input particles"),
        IntParam("box_size", default=256, min=16),
        EnumParam("mode", choices=("fast", "accurate"), default="fast"),
        FloatParam("sigma", default=2.0, min=0.0, condition="mode == 'accurate'"),
        IntParam("iterations", default=5, min=1, condition=advanced_only),
        BoolParam("use_mask", default=False),
        PathParam("mask", optional=True, must_exist=True, condition="use_mask"),
        StrParam("symmetry", default="c1"),
    ]
    outputs = {"volume": "Volume"}

    def check_params(self, params: ResolvedParams) -> list[str]:
        if params.box_size % 2:
            return [f"param 'box_size': must be even, got {params.box_size}"]
        return []

    def steps(self, params: ResolvedParams) -> StepGraph:
        return StepGraph()


def problems_of(raw: dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(ParamValidationError) as err:
        Refine.validate(raw, **kwargs)
    assert err.value.protocol == "test.refine"
    return err.value.problems


def test_defaults_and_coercion_from_cli_strings() -> None:
    params = Refine.validate(
        {"particles": "3.particles", "box_size": "128", "mode": "accurate", "sigma": "0.5"}
    )
    assert params["box_size"] == 128 and params.box_size == 128
    assert params.sigma == 0.5 and params.symmetry == "c1"
    assert params.particles == Pointer(3, "particles")
    assert set(params) == {p.name for p in Refine.params}
    assert params.protocol == "test.refine"


def test_every_problem_is_listed_with_its_param() -> None:
    problems = problems_of({"box_size": "abc", "mode": "slow", "use_mask": "perhaps"})
    assert problems == [
        "param 'particles': a value is required (Particles: pointer)",
        "param 'box_size': expected an integer, got 'abc'",
        "param 'mode': expected one of 'fast', 'accurate', got 'slow'",
        "param 'use_mask': expected true or false, got 'perhaps'",
    ]


def test_unknown_param_suggests_close_name() -> None:
    problems = problems_of({"particles": "1.particles", "box_sise": "64", "zzz": "1"})
    assert problems == [
        "param 'box_sise': no such param in protocol 'test.refine' (did you mean 'box_size'?)",
        "param 'zzz': no such param in protocol 'test.refine'",
    ]


def test_condition_false_means_ignored_and_not_validated() -> None:
    params = Refine.validate({"particles": "1.p", "sigma": "-5", "iterations": "abc"})
    assert params.sigma == 2.0 and params.iterations == 5  # defaults, bad values ignored
    assert not params.is_active("sigma") and not params.is_active("iterations")
    assert params.ignored == {"sigma", "iterations"}
    assert params.is_active("box_size")


def test_condition_true_means_validated() -> None:
    problems = problems_of({"particles": "1.p", "mode": "accurate", "sigma": "-5", "iterations": "0"})
    assert problems == ["param 'sigma': must be >= 0.0, got -5.0", "param 'iterations': must be >= 1, got 0"]


def test_path_condition_and_existence(tmp_path: Path) -> None:
    assert Refine.validate({"particles": "1.p", "mask": "nope.mrc"}).mask is None  # use_mask false
    problems = problems_of({"particles": "1.p", "use_mask": "yes", "mask": "nope.mrc"}, base_dir=tmp_path)
    assert problems == [f"param 'mask': path does not exist: {tmp_path / 'nope.mrc'}"]
    (tmp_path / "m.mrc").write_bytes(b"")
    params = Refine.validate({"particles": "1.p", "use_mask": "yes", "mask": "m.mrc"}, base_dir=tmp_path)
    assert params.mask == Path("m.mrc")


def test_condition_on_an_invalid_param_is_not_reported_twice() -> None:
    assert problems_of({"particles": "1.p", "mode": "bogus", "sigma": "x"}) == [
        "param 'mode': expected one of 'fast', 'accurate', got 'bogus'"
    ]


def test_check_params_runs_after_single_params_pass() -> None:
    assert problems_of({"particles": "1.p", "box_size": "129"}) == ["param 'box_size': must be even, got 129"]


def test_to_json_round_trips_through_validate() -> None:
    params = Refine.validate({"particles": "motioncorr.particles", "mode": "accurate", "sigma": "1"})
    stored = json.loads(json.dumps(params.to_json()))
    assert stored["particles"] == "motioncorr.particles" and stored["mask"] is None
    assert dict(Refine.validate(stored)) == dict(params)


def test_bind_inputs_checks_type_and_output() -> None:
    params = Refine.validate({"particles": "motioncorr.particles"})
    assert params.pointers() == {"particles": Pointer("motioncorr", "particles")}
    with pytest.raises(ProtocolError, match="input 'particles' .* is not resolved yet"):
        params.input("particles")
    ref = OutputRef(7, "particles", "SetOfParticles", Path("/p/runs/7"), value={"files": ["a.star"]})
    bound = params.bind_inputs({"particles": ref})
    assert bound.input("particles") is ref and bound.pointers() == {}
    assert bound.to_json()["particles"] == "7.particles"
    assert ref.files() == [Path("/p/runs/7/a.star")]
    with pytest.raises(ParamValidationError) as err:
        params.bind_inputs({"particles": OutputRef(7, "particles", "Volume", Path("/p")), "box_size": ref})
    assert err.value.problems == [
        "param 'particles': 7.particles is a Volume, expected a SetOfParticles",
        "param 'box_size': not an active pointer param, cannot bind 7.particles",
    ]
    with pytest.raises(ParamValidationError, match="points to motioncorr.particles, but the bound output"):
        params.bind_inputs({"particles": OutputRef(7, "coords", "SetOfParticles", Path("/p"))})


def test_attribute_access_error_names_protocol() -> None:
    params = Refine.validate({"particles": "1.p"})
    with pytest.raises(AttributeError, match="protocol 'test.refine' has no param 'nope'"):
        _ = params.nope


def test_describe_gives_the_form_as_data() -> None:
    described = Refine.describe()
    json.dumps(described)
    assert described["name"] == "test.refine" and described["label"] == "3D refinement"
    assert described["help"] == "Refine a map.\n\nSecond paragraph of help."
    assert described["inputs"] == ["particles"] and described["outputs"] == {"volume": "Volume"}
    assert [p["name"] for p in described["params"]][:3] == ["particles", "box_size", "mode"]
    assert described["citations"] == ["@article{x, title={X}}"]


def _declare(**attrs: Any) -> type[Protocol]:
    def steps(self: Protocol, params: ResolvedParams) -> StepGraph:
        return StepGraph()

    return type("Bad", (Protocol,), {"steps": steps, **attrs})


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"name": "has space"}, "name must look like 'plugin.protocol'"),
        ({"name": "t.x", "params": [IntParam("a"), IntParam("a")]}, "param 'a' is declared twice"),
        ({"name": "t.x", "params": [IntParam("values")]}, "param name 'values' is reserved"),
        ({"name": "t.x", "params": ["a"]}, "params holds 'a', which is not a Param"),
        ({"name": "t.x", "params": [IntParam("a", condition="b > 1"), IntParam("b")]},
         r"condition of param 'a' refers to \['b'\], which are not params declared before it"),
        ({"name": "t.x", "params": [IntParam("a", condition="__import__('os')")]},
         "Call is not allowed"),
        ({"name": "t.x", "params": [IntParam("a", condition="a >")]}, "is not a valid expression"),
        ({"name": "t.x", "outputs": {"bad name": "Volume"}}, "outputs must map identifiers"),
        ({"name": "t.x", "citations": "@article{}"}, "citations must be a list"),
    ],
)  # fmt: skip
def test_declaration_errors_name_the_protocol(attrs: dict[str, Any], message: str) -> None:
    with pytest.raises(ProtocolDefinitionError, match=message):
        _declare(**attrs)


def test_callable_condition_reading_an_undeclared_param_is_a_definition_error() -> None:
    proto = _declare(name="t.x", params=[IntParam("a", default=1, condition=lambda v: v["later"] > 1)])
    with pytest.raises(ProtocolDefinitionError, match="condition of param 'a' reads 'later'"):
        proto.validate({})


def test_protocol_without_steps_is_a_definition_error() -> None:
    with pytest.raises(ProtocolDefinitionError, match="protocol 't.nosteps': define steps"):
        type("NoSteps", (Protocol,), {"name": "t.nosteps"})


def test_unnamed_protocol_cannot_be_used() -> None:
    with pytest.raises(ProtocolDefinitionError, match="has no protocol name"):
        _declare().validate({})


def test_build_steps_requires_a_step_graph() -> None:
    proto = _declare(name="t.x", steps=lambda self, p: [])
    with pytest.raises(ProtocolDefinitionError, match=r"steps\(\) returned list, expected a StepGraph"):
        proto().build_steps(proto.validate({}))
