"""A run's registered outputs: sets, files and values, by name."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.app.records import OutputInfo, Record


@dataclass(frozen=True)
class InputInfo(Record):
    """One input of a run: its param, and the run and output it reads (with that run's state)."""

    param: str
    run_id: int
    run: str
    output: str
    state: str


def list_outputs(target: ProjectTarget, run_ref: int | str) -> list[OutputInfo]:
    """The outputs a run registered, in the order it registered them (none until it finished)."""
    with project_store(target) as (_project, store):
        run = store.runs.get(run_ref)
        return [OutputInfo.of(output) for output in store.outputs.list(run.id)]


def get_output(target: ProjectTarget, run_ref: int | str, name: str) -> OutputInfo:
    """One output by name; NotFoundError lists the run's outputs otherwise."""
    with project_store(target) as (_project, store):
        run = store.runs.get(run_ref)
        return OutputInfo.of(store.outputs.get(run.id, name))


def run_inputs(target: ProjectTarget, run_ref: int | str) -> list[InputInfo]:
    """The outputs of other runs that a run reads, one per input param."""
    with project_store(target) as (_project, store):
        run = store.runs.get(run_ref)
        inputs = []
        for link in store.runs.inputs(run.id):
            producer = store.runs.get(link.producer_run_id)
            inputs.append(InputInfo(link.param, producer.id, producer.name, link.output_name, producer.state))
        return inputs
