"""A project's runs as a graph: runs and the links from an output to the runs that read it.

What the web interface draws as a flowchart and lists as a table: every run with its state,
step counts and outputs, and one edge per input param. A few queries, however many runs the
project has.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.app.records import Record, StepCounts
from orchestrator.app.scheduler import SchedulerState, scheduler_state
from orchestrator.app.status import RunSummary


@dataclass(frozen=True)
class RunEdge(Record):
    """Output ``output`` of run ``source`` is param ``param`` of run ``target``."""

    source: int
    target: int
    output: str
    param: str


@dataclass(frozen=True)
class RunNode(Record):
    """A run with its outputs as (name, type)."""

    run: RunSummary
    outputs: list[tuple[str, str]]


@dataclass(frozen=True)
class RunGraph(Record):
    project: str
    scheduler: SchedulerState
    last_event: int
    nodes: list[RunNode]
    edges: list[RunEdge]


def run_graph(target: ProjectTarget) -> RunGraph:
    """Every run of the project, its outputs, and every link between runs; ``last_event`` is
    the newest event's id when it was read (a page follows changes after it)."""
    with project_store(target) as (project, store):
        last_event = store.events.last_id()
        counts = store.steps.counts_by_run()
        outputs = store.outputs.names_by_run()
        nodes = [RunNode(RunSummary.of(run, StepCounts(counts.get(run.id, {}))), outputs.get(run.id, []))
                 for run in store.runs.list()]
        edges = [RunEdge(link.producer_run_id, consumer, link.output_name, link.param)
                 for consumer, link in store.runs.links()]
        scheduler = scheduler_state(project)
    return RunGraph(project.name, scheduler, last_event, nodes, edges)


def last_event_id(target: ProjectTarget) -> int:
    """The newest event's id: it changes whenever a run or step changes state."""
    with project_store(target) as (_project, store):
        return store.events.last_id()
