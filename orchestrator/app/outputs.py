"""A run's registered outputs: sets, files and values, by name."""

from __future__ import annotations

from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.app.records import OutputInfo


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
