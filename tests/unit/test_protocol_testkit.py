"""The testkit protocols, run in-process step by step the way a worker would call them."""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

# orch_testkit is installed by `make install-test` (pip install -e tests/plugin_testkit).
from orch_testkit.protocols import PROTOCOLS, Chain, Fail, Fanout, Hold, Noop, Produce, Sleep
from orch_testkit.steps import DeliberateFailure

from orchestrator.protocol import (
    OutputRef,
    Protocol,
    ProtocolError,
    ResolvedParams,
    StepContext,
    StepGraph,
    execute_step,
    fingerprint_path,
    step_hash,
)


def run_steps(
    proto: type[Protocol], params: ResolvedParams, run_dir: Path, run_id: int = 1
) -> tuple[StepGraph, dict[str, Any]]:
    """A minimal sequential executor: topological order, one attempt per step."""
    graph = proto().build_steps(params)
    run_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for step in graph.topological_order():
        ctx = StepContext(
            project_dir=run_dir.parent, run_id=run_id, run_dir=run_dir, step_name=step.name,
            log_path=run_dir / "logs" / f"{step.name}.log", params=params.to_json(),
        )  # fmt: skip
        results[step.name] = execute_step(step.func, ctx, step.args)
    return graph, results


def test_all_protocols_describe_to_json() -> None:
    names = [proto.name for proto in PROTOCOLS]
    assert names == [f"testkit.{n}" for n in ("noop", "sleep", "fail", "produce", "fanout", "chain", "hold",
                                              "particles", "select")]
    for proto in PROTOCOLS:
        json.dumps(proto.describe())


def test_noop_and_sleep_have_count_independent_steps(tmp_path: Path) -> None:
    graph, results = run_steps(Noop, Noop.validate({"count": "5"}), tmp_path / "noop")
    assert graph.names() == [f"noop_{i}" for i in range(5)] and set(results.values()) == {None}
    sleep = Sleep.validate({"count": "3", "seconds": "0", "gpus": "1", "cpus": "2"})
    graph = Sleep().build_steps(sleep)
    assert all(step.deps == () and step.resources.gpus == 1 and step.resources.cpus == 2 for step in graph)
    assert len(Noop().build_steps(Noop.validate({"count": "0"}))) == 0


def test_fanout_is_a_dag_and_gather_sums(tmp_path: Path) -> None:
    params = Fanout.validate({"count": "4"})
    graph, results = run_steps(Fanout, params, tmp_path / "fan")
    assert graph["gather"].deps == ("part_0", "part_1", "part_2", "part_3")
    assert graph.downstream_of("part_2") == ["gather"]
    assert results["gather"]["total"] == 1 + 2 + 3 + 4
    outputs = Fanout().collect_outputs(params, results)
    assert outputs["total"].value == {"total": 10} and outputs["total"].type_name == "Value"


def test_fail_counts_attempts_in_the_run_dir(tmp_path: Path) -> None:
    params = Fail.validate({"fail_times": "2", "retries": "3"})
    step = Fail().build_steps(params)["flaky"]
    assert step.retries == 3
    ctx = StepContext(tmp_path, 1, tmp_path / "run", "flaky", tmp_path / "flaky.log")
    for attempt in (1, 2):
        with pytest.raises(DeliberateFailure, match=f"attempt {attempt}, fail_times=2"):
            execute_step(step.func, ctx, step.args)
    assert execute_step(step.func, ctx, step.args) == {"attempts": 3}
    assert Fail().build_steps(Fail.validate({}))["flaky"].retries is None


def test_fail_always_ignores_fail_times(tmp_path: Path) -> None:
    params = Fail.validate({"fail_always": "true", "fail_times": "-1"})  # ignored, so not validated
    step = Fail().build_steps(params)["flaky"]
    ctx = StepContext(tmp_path, 1, tmp_path, "flaky", tmp_path / "flaky.log")
    for _ in range(3):
        with pytest.raises(DeliberateFailure):
            execute_step(step.func, ctx, step.args)


def test_produce_then_chain(tmp_path: Path) -> None:
    produce_params = Produce.validate({"count": "3", "size": "3000", "seed": "7"})
    graph, results = run_steps(Produce, produce_params, tmp_path / "runs" / "1")
    files = sorted((tmp_path / "runs" / "1" / "out").iterdir())
    assert [f.stat().st_size for f in files] == [3000] * 3
    assert list(graph["write_files"].outputs) == [f"out/{f.name}" for f in files]
    outputs = Produce().collect_outputs(produce_params, results)
    assert outputs["files"].path == "out" and len(outputs["files"].value["files"]) == 3

    chain_params = Chain.validate({"source": "produce.files"})
    ref = OutputRef(1, "files", outputs["files"].type_name, tmp_path / "runs" / "1", outputs["files"].path,
                    outputs["files"].value)  # fmt: skip
    bound = chain_params.bind_inputs({"source": ref})
    graph, results = run_steps(Chain, bound, tmp_path / "runs" / "2", run_id=2)
    derive = graph["derive"]
    assert list(derive.inputs) == [str(f) for f in files]
    derived = (tmp_path / "runs" / "2" / "derived.txt").read_text().splitlines()
    assert [line.split()[:2] for line in derived] == [[f.name, "3000"] for f in files]
    assert Chain().collect_outputs(bound, results)["derived"].value["bytes"] == 9000
    before = step_hash(derive, {path: fingerprint_path(path) for path in derive.inputs})
    files[0].write_bytes(b"x" * 3000)  # the producer's file changed: the derived step must re-run
    assert step_hash(derive, {path: fingerprint_path(path) for path in derive.inputs}) != before


def test_produce_is_deterministic_per_seed(tmp_path: Path) -> None:
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        run_steps(Produce, Produce.validate({"count": "1", "size": "100", "seed": seed}), tmp_path / name)
    data = {name: (tmp_path / name / "out" / "file_0000.bin").read_bytes() for name in "abc"}
    assert data["a"] == data["b"] != data["c"]


def test_chain_needs_bound_input() -> None:
    with pytest.raises(ProtocolError, match="input 'source' .4.files. is not resolved yet"):
        Chain().build_steps(Chain.validate({"source": "4.files"}))


def test_hold_writes_its_pid(tmp_path: Path) -> None:
    params = Hold.validate({"seconds": "0.05"})
    graph, results = run_steps(Hold, params, tmp_path / "hold")
    assert results["hold"]["pid"] == os.getpid()
    assert (tmp_path / "hold" / "hold.pid").read_text() == str(os.getpid())


def test_steps_run_in_a_fresh_worker_process(tmp_path: Path) -> None:
    """The stored import path and JSON args are all a separate process needs to run a step."""
    step = Fanout().build_steps(Fanout.validate({"count": "2"}))["part_1"]
    ctx = StepContext(tmp_path, 1, tmp_path / "run", step.name, tmp_path / "part_1.log")
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(execute_step, step.func, ctx, step.args).result(timeout=60)
    assert result == {"index": 1, "value": 2}
    assert json.loads((tmp_path / "run" / "parts" / "part_0001.json").read_text())["value"] == 2
