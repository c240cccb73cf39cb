"""A run's provenance record, and the lineage of an output back to the raw data."""

from __future__ import annotations

from typing import Any

from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.errors import NotFoundError
from orchestrator.provenance.lineage import LineageNode, lineage


def run_provenance(target: ProjectTarget, run_ref: int | str) -> dict[str, Any]:
    """The record kept when the run finished; NotFoundError says why there is none."""
    with project_store(target) as (_project, store):
        run = store.runs.get(run_ref)
        record = store.provenance.get(run.id)
        if record is None:
            why = (f"it is {run.state}; a record is kept when a run finishes" if run.state != "finished"
                   else "it finished before provenance records were kept (restart it to record one)")
            raise NotFoundError(f"run {run.name} has no provenance record: {why}")
        return record


def output_lineage(target: ProjectTarget, run_ref: int | str, output: str | None = None) -> list[LineageNode]:
    """The runs behind a run (or one of its outputs), nearest first, down to the raw data."""
    with project_store(target) as (_project, store):
        return lineage(store, run_ref, output)
