"""From an output back to the raw data: the runs it came from, run by run.

Each step of the walk follows the input links a run was created with (param -> producer's
output); runs with no run inputs are where data entered the project, and their provenance
records name the raw files they read, with their fingerprints.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import NotFoundError
from orchestrator.store import ProjectStore


@dataclass(frozen=True)
class LineageNode:
    """One run on the way back: which of its outputs were used downstream, and what it read."""

    run_id: int
    run: str
    protocol: str
    state: str
    depth: int  # 0: the run the walk started from
    outputs_used: list[str]
    inputs: list[dict[str, Any]]  # param, run, output
    raw_files: list[dict[str, Any]] = field(default_factory=list)  # fingerprints, for runs that read raw data
    recorded: bool = True  # False: the run has no provenance record (not finished, or made before records)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "run": self.run, "protocol": self.protocol, "state": self.state,
                "depth": self.depth, "outputs_used": self.outputs_used, "inputs": self.inputs,
                "raw_files": self.raw_files, "recorded": self.recorded}


def lineage(store: ProjectStore, run_ref: int | str, output: str | None = None) -> list[LineageNode]:
    """The runs behind ``run_ref`` (or behind its output ``output``), nearest first; each run once."""
    start = store.runs.get(run_ref)
    if output is not None:
        names = [o.name for o in store.outputs.list(start.id)]
        if output not in names:
            raise NotFoundError(f"run {start.name} has no output {output!r}; it has: {', '.join(names) or 'none'}")
    used: dict[int, list[str]] = {start.id: [output] if output else []}
    depth = {start.id: 0}
    order: list[int] = []
    pending = deque([start.id])
    while pending:
        run_id = pending.popleft()
        order.append(run_id)
        for link in store.runs.inputs(run_id):
            used.setdefault(link.producer_run_id, [])
            if link.output_name not in used[link.producer_run_id]:
                used[link.producer_run_id].append(link.output_name)
            if link.producer_run_id not in depth:
                depth[link.producer_run_id] = depth[run_id] + 1
                pending.append(link.producer_run_id)
    nodes = []
    for run_id in order:
        run = store.runs.get(run_id)
        inputs = []
        for link in store.runs.inputs(run_id):
            inputs.append({"param": link.param, "run": store.runs.get(link.producer_run_id).name,
                           "output": link.output_name})
        record = store.provenance.get(run_id)
        raw = list(record["files"]["read_raw"]) if record else []
        nodes.append(LineageNode(run.id, run.name, run.protocol, run.state, depth[run_id], used[run_id], inputs,
                                 raw, record is not None))
    return nodes
