"""StepContext, execute_step (how workers call steps) and collecting a run's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.protocol import (
    OutputError,
    OutputValue,
    StepContext,
    StepDefinitionError,
    StepResultError,
    execute_step,
    output_result,
)
from orchestrator.protocol.outputs import collect_outputs


def record(ctx: StepContext, value: int, note: str = "") -> dict[str, Any]:
    ctx.path("seen.txt").write_text(f"{ctx.step_name}:{value}:{note}")
    ctx.log(f"recorded {value}")
    return {"value": value, "gpus": ctx.gpus, "tuple": (1, 2)}


def returns_list(ctx: StepContext) -> list[int]:
    return [1]


def returns_path(ctx: StepContext) -> dict[str, Any]:
    return {"where": ctx.run_dir}


def returns_none(ctx: StepContext) -> None:
    return None


def boom(ctx: StepContext) -> None:
    raise RuntimeError("kaboom")


@pytest.fixture
def ctx(tmp_path: Path) -> StepContext:
    run_dir = tmp_path / "runs" / "3"
    run_dir.mkdir(parents=True)
    return StepContext(
        project_dir=tmp_path, run_id=3, run_dir=run_dir, step_name="rec",
        log_path=tmp_path / "logs" / "rec.log", gpus=[1],
    )  # fmt: skip


def test_execute_step_passes_ctx_and_args_and_returns_json(ctx: StepContext) -> None:
    result = execute_step(f"{__name__}:record", ctx, {"value": 7, "note": "hi"})
    assert result == {"value": 7, "gpus": [1], "tuple": [1, 2]}
    assert (ctx.run_dir / "seen.txt").read_text() == "rec:7:hi"
    assert ctx.log_path.read_text().endswith(" recorded 7\n")
    assert execute_step(f"{__name__}:returns_none", ctx, {}) is None


def test_bad_results_name_the_step(ctx: StepContext) -> None:
    with pytest.raises(
        StepResultError, match=r"step 'rec' \(.*:returns_list\) returned list; expected a dict"
    ):
        execute_step(f"{__name__}:returns_list", ctx, {})
    with pytest.raises(StepResultError, match="returned a result that is not JSON-serialisable"):
        execute_step(f"{__name__}:returns_path", ctx, {})


def test_step_exceptions_propagate(ctx: StepContext) -> None:
    with pytest.raises(RuntimeError, match="kaboom"):
        execute_step(f"{__name__}:boom", ctx, {})


def test_ctx_path_stays_in_run_dir(ctx: StepContext) -> None:
    assert ctx.path("a/b.txt") == ctx.run_dir / "a" / "b.txt"
    for bad in ("../other/x", "/etc/passwd"):
        with pytest.raises(StepDefinitionError, match="must be relative to the run directory"):
            ctx.path(bad)


DECLARED = {"files": "Files", "total": "Value"}


def test_collect_outputs_from_results() -> None:
    results = {
        "write": {"outputs": {"files": output_result("out", {"files": ["out/a"]})}},
        "noise": None,
        "sum": {"total": 3, "outputs": {"total": {"value": 3}}},
    }
    assert collect_outputs("t.p", DECLARED, results) == {
        "files": OutputValue("files", "Files", "out", {"files": ["out/a"]}),
        "total": OutputValue("total", "Value", None, 3),
    }


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ({"a": {"outputs": {"files": {"path": "x"}}}}, r"no step announced output\(s\) total"),
        ({"a": {"outputs": {"volume": {}}}}, "step 'a': output 'volume' is not declared"),
        ({"a": {"outputs": {"files": {}, "total": {}}}, "b": {"outputs": {"total": {}}}},
         "output 'total' announced by both step 'a' and step 'b'"),
        ({"a": {"outputs": {"files": {"pth": "x"}, "total": {}}}}, "output 'files' must be"),
        ({"a": {"outputs": ["files"]}}, r"result\['outputs'\] must be a dict"),
    ],
)  # fmt: skip
def test_collect_outputs_errors(results: dict[str, Any], message: str) -> None:
    with pytest.raises(OutputError, match=message):
        collect_outputs("t.p", DECLARED, results)
