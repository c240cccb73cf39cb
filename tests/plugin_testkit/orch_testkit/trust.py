"""Protocols for the tests of runs you can trust: counted executions, process trees, failure paths.

- ``testkit.ledger``: many short steps; each appends one line to the run's ``ledger.txt`` as it
  starts, so a test counts how many times every step really ran (across scheduler crashes);
- ``testkit.spawn``: one step that starts a program (``mpirun`` and its ranks, say) and waits on it,
  for cancel and crash-recovery tests of a step's whole process tree;
- ``testkit.partial``: one step fails for good while its siblings run long: the siblings must be ended;
- ``testkit.slowfail``: one step that fails after a while, attempt after attempt (the retry budget);
- ``testkit.badoutputs``: steps that succeed, outputs that cannot be collected.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from orch_testkit.steps import flaky_step, hold_step
from orchestrator.protocol import (
    FloatParam,
    IntParam,
    OutputValue,
    Protocol,
    ProtocolError,
    ResolvedParams,
    StepContext,
    StepGraph,
    StrParam,
)

LEDGER = "ledger.txt"


def ledger_step(ctx: StepContext, seconds: float) -> dict[str, Any]:
    """Append ``<step> <attempt> <pid>`` to the run's ledger (one write: lines never interleave), sleep."""
    path = ctx.run_dir / LEDGER
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.step_name} {ctx.attempt} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    if seconds:
        time.sleep(seconds)
    return {"attempt": ctx.attempt}


def slow_failure_step(ctx: StepContext, seconds: float) -> None:
    """Work ``seconds``, then fail: a failure a test can interrupt (or not) between attempts."""
    time.sleep(seconds)
    raise RuntimeError(f"step '{ctx.step_name}' attempt {ctx.attempt} fails after {seconds:g} s")


def spawn_step(ctx: StepContext, command: list[str], record: str) -> dict[str, Any]:
    """Start ``command`` (its own children stay in this step's tree), record the pids, wait for it."""
    program = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    target = ctx.path(record)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps({"worker": os.getpid(), "program": program.pid}))
    os.replace(partial, target)
    return {"exit_code": program.wait()}


class Ledger(Protocol):
    """K short steps that count their own executions in the run's ledger."""

    name = "testkit.ledger"
    label = "Counted steps"
    params = [
        IntParam("count", default=100, min=1, help="Number of steps."),
        FloatParam("seconds", default=0.05, min=0.0, help="How long each step lasts."),
    ]

    def steps(self, p: ResolvedParams) -> StepGraph:
        graph = StepGraph()
        for i in range(p.count):
            graph.add(f"step_{i:04d}", ledger_step, {"seconds": p.seconds})
        return graph


class Spawn(Protocol):
    """One step that runs a program and waits for it (``command`` as a JSON list)."""

    name = "testkit.spawn"
    label = "Run a program"
    params = [StrParam("command", default='["sleep", "3600"]', help="The program and its arguments, as JSON.")]

    def steps(self, p: ResolvedParams) -> StepGraph:
        try:
            command = json.loads(p.command)
        except ValueError as exc:
            raise ProtocolError(f"param 'command': not JSON ({exc})") from None
        if not isinstance(command, list) or not command or not all(isinstance(w, str) for w in command):
            raise ProtocolError("param 'command': a JSON list of strings, e.g. [\"sleep\", \"60\"]")
        graph = StepGraph()
        graph.add("spawn", spawn_step, {"command": command, "record": "spawn.json"}, outputs=["spawn.json"])
        return graph


class Partial(Protocol):
    """One step that always fails (no retries) beside ``count`` siblings that hold for long."""

    name = "testkit.partial"
    label = "A failure among long siblings"
    params = [IntParam("count", default=2, min=1, help="Long siblings."),
              FloatParam("seconds", default=600.0, min=0.0, help="How long the siblings hold.")]

    def steps(self, p: ResolvedParams) -> StepGraph:
        graph = StepGraph()
        for i in range(p.count):
            graph.add(f"sibling_{i}", hold_step, {"seconds": p.seconds, "pid_file": f"sibling_{i}.pid"})
        graph.add("broken", flaky_step, {"fail_times": 0, "fail_always": True}, retries=0)
        return graph


class SlowFail(Protocol):
    """One step that always fails after ``seconds``, with ``retries`` retries."""

    name = "testkit.slowfail"
    label = "A slow failure"
    params = [FloatParam("seconds", default=2.0, min=0.0, help="How long each attempt works before failing."),
              IntParam("retries", default=1, min=0, help="Retries of the step.")]

    def steps(self, p: ResolvedParams) -> StepGraph:
        graph = StepGraph()
        graph.add("slow", slow_failure_step, {"seconds": p.seconds}, retries=p.retries)
        return graph


class BadOutputs(Protocol):
    """Steps that succeed; collecting the run's outputs fails."""

    name = "testkit.badoutputs"
    label = "Outputs that cannot be collected"
    params = [IntParam("count", default=2, min=1, help="Number of steps.")]
    outputs = {"result": "Value"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        graph = StepGraph()
        for i in range(p.count):
            graph.add(f"step_{i}", ledger_step, {"seconds": 0.0})
        return graph

    def collect_outputs(self, params: ResolvedParams,
                        results: Mapping[str, Mapping[str, Any] | None]) -> dict[str, OutputValue]:
        raise ProtocolError(f"testkit.badoutputs: no output 'result' in the {len(results)} step results")


TRUST_PROTOCOLS: tuple[type[Protocol], ...] = (Ledger, Spawn, Partial, SlowFail, BadOutputs)
