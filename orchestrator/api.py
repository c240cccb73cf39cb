"""The Python API in a few calls: open or create a project, run a protocol, wait for it.

    from orchestrator import api

    if __name__ == "__main__":          # the local cluster starts worker processes (spawn)
        project = api.project("~/em/test1", create=True)
        run = api.run(project, "testkit.fanout", {"count": 8})      # scheduler started detached
        print(run.state, api.outputs(project, run.id))
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import NotFoundError
from orchestrator.project import Project
from orchestrator.scheduler.control import submit, wait_for_run
from orchestrator.store import OutputRecord, RunRecord


def project(ref: str | Path, create: bool = False) -> Project:
    """A project by folder or registered name; ``create=True`` makes it when missing."""
    try:
        return Project.load(ref)
    except NotFoundError:
        if not create:
            raise
        return Project.create(Path(ref))


def run(project: Project, protocol: str, params: Mapping[str, Any] | None = None, *, name: str | None = None,
        wait: bool = True, timeout_s: float | None = None) -> RunRecord:
    """Queue a run (its scheduler starts detached if needed) and, by default, wait for its end."""
    record = submit(project, protocol, {k: v for k, v in (params or {}).items()}, name=name)
    if not wait:
        return record
    with project.open_store() as store:
        return wait_for_run(store, record.id, timeout_s)


def outputs(project: Project, run_ref: int | str) -> dict[str, OutputRecord]:
    """The registered outputs of a run, by name."""
    with project.open_store() as store:
        run_id = store.runs.get(run_ref).id
        return {output.name: output for output in store.outputs.list(run_id)}
