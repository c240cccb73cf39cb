"""A run's provenance record, and the lineage of an output back to the raw data."""

from __future__ import annotations

import time
from typing import Any

from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.errors import NotFoundError
from orchestrator.project import Project
from orchestrator.provenance.lineage import LineageNode, lineage
from orchestrator.scheduler.lock import running_pid
from orchestrator.store import ProjectStore, RunRecord, RunState

#: how long a comparison waits for the record of a run that just finished (the scheduler reads
#: its files beside its loop: an import of many movies takes that long to fingerprint)
RECORD_WAIT_S = 600.0


def run_provenance(target: ProjectTarget, run_ref: int | str) -> dict[str, Any]:
    """The record kept when the run finished; NotFoundError says why there is none."""
    with project_store(target) as (project, store):
        run = store.runs.get(run_ref)
        return finished_record(project, store, run, wait_s=0.0)


def finished_record(project: Project, store: ProjectStore, run: RunRecord,
                    wait_s: float = RECORD_WAIT_S) -> dict[str, Any]:
    """Run ``run``'s record; while a scheduler runs it may still be writing the record of a run
    that just finished, which this waits up to ``wait_s`` for. NotFoundError says why there is none."""
    deadline = time.monotonic() + wait_s
    while True:
        record = store.provenance.get(run.id)
        if record is not None:
            return record
        pid = running_pid(project) if run.run_state is RunState.FINISHED else None
        if pid is None or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if run.state != "finished":
        why = f"it is {run.state}; a record is kept when a run finishes"
    elif pid is not None:
        why = f"the scheduler (pid {pid}) is still writing it (fingerprinting the run's files); try again shortly"
    else:
        why = "it finished before provenance records were kept (restart it to record one)"
    raise NotFoundError(f"run {run.name} of project {project.name} has no provenance record: {why}")


def output_lineage(target: ProjectTarget, run_ref: int | str, output: str | None = None) -> list[LineageNode]:
    """The runs behind a run (or one of its outputs), nearest first, down to the raw data."""
    with project_store(target) as (_project, store):
        return lineage(store, run_ref, output)
