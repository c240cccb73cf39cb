"""Replay a project (or some of its runs) into a new project, and compare two runs.

A replay exports the runs as a workflow (with the runs they depend on), fills its open inputs
with the original values (the same raw files, read where they are), creates the runs in the new
project and runs them on the host each ran on, or on ``host``; then compares each run with its
original (:mod:`orchestrator.provenance.compare`) and keeps the report as ``replay.json`` in the
new project. Seeded algorithms replayed on the same host give bit-identical files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from orchestrator.app.access import ProjectTarget, load_project, project_store
from orchestrator.app.provenance import finished_record
from orchestrator.app.records import Record, RunInfo
from orchestrator.app.runs import ProgressCallback, wait_for_runs
from orchestrator.app.scheduler import ensure_scheduler
from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.hosts.config.loader import HOSTS_FILE_NAME
from orchestrator.plugins import PluginRegistry, discover
from orchestrator.project import Project
from orchestrator.provenance.compare import RunComparison, RunSide, compare_runs
from orchestrator.store import ProjectStore, RunState
from orchestrator.workflow import parse_workflow, submit_workflow
from orchestrator.workflow.export import exported_workflow

REPORT_FILE = "replay.json"


@dataclass(frozen=True)
class ReplayedRun(Record):
    """One run of a replay: its state there and here, and how it compares (when both finished)."""

    name: str
    original_state: str
    replay_state: str
    comparison: dict[str, Any] | None
    identical: bool | None


@dataclass(frozen=True)
class ReplayReport(Record):
    """What a replay did: the new project, each run's comparison, and runs left out (and why)."""

    source: str
    into: str
    runs: list[ReplayedRun]
    skipped: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return bool(self.runs) and all(run.identical for run in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "identical": self.identical}


def compare(target_a: ProjectTarget, run_a: int | str, run_b: int | str,
            target_b: ProjectTarget | None = None) -> RunComparison:
    """Compare run ``run_a`` with ``run_b`` (of ``target_b``, default the same project)."""
    with project_store(target_a) as (project_a, store_a):
        if target_b is None:
            return compare_runs(_side(project_a, store_a, run_a), _side(project_a, store_a, run_b))
        with project_store(target_b) as (project_b, store_b):
            return compare_runs(_side(project_a, store_a, run_a), _side(project_b, store_b, run_b))


def _side(project: Project, store: ProjectStore, run_ref: int | str) -> RunSide:
    run = store.runs.get(run_ref)
    return RunSide(project, store, run, finished_record(project, store, run))


def replay_project(source: ProjectTarget, into: str | PathLike[str], runs: Sequence[int | str] | None = None, *,
                   host: str | None = None, timeout_s: float | None = None,
                   on_progress: ProgressCallback | None = None, registry: PluginRegistry | None = None,
                   on_created: Callable[[list[RunInfo]], None] | None = None) -> ReplayReport:
    """Re-run ``runs`` (default: every finished run) of ``source`` in the new project ``into``,
    wait for them, and compare each with its original."""
    registry = registry or discover()
    original = load_project(source)
    with project_store(original) as (project, store):
        chosen, skipped = _replayable(store, runs)
        exported = exported_workflow(store, project, registry, chosen, with_ancestors=True)
    document = parse_workflow(exported.document, Path(f"replay of {original.name}"))
    filled = document.filled(exported.original_values)
    replay = Project.create(Path(into))
    try:
        _copy_hosts_file(original, replay)
        with replay.open_store() as new_store:
            created = submit_workflow(filled, registry, new_store, replay, host=host)
    except OrchestratorError:
        replay.delete()  # we made it a moment ago; nothing else is in it
        raise
    infos = [RunInfo.of(run) for run in created]
    if on_created is not None:
        on_created(infos)
    ensure_scheduler(replay)
    wait_for_runs(replay, [run.id for run in created], timeout_s, on_progress=on_progress)
    report = _report(original, replay, exported.run_names, skipped)
    (replay.path / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return report


def _replayable(store: ProjectStore, refs: Sequence[int | str] | None) -> tuple[list[int], list[str]]:
    if refs:
        return [store.runs.get(ref).id for ref in refs], []
    runs = store.runs.list()
    if not runs:
        raise UsageError("the project has no runs to replay")
    finished = [run.id for run in runs if run.run_state is RunState.FINISHED]
    skipped = [f"{run.name} ({run.state})" for run in runs if run.run_state is not RunState.FINISHED]
    if not finished:
        raise UsageError("the project has no finished run to replay")
    return finished, skipped


def _copy_hosts_file(original: Project, replay: Project) -> None:
    """The project's own hosts file, so the runs find the hosts they ran on."""
    hosts = original.path / HOSTS_FILE_NAME
    if hosts.is_file():
        shutil.copy2(hosts, replay.path / HOSTS_FILE_NAME)


def _report(original: Project, replay: Project, names: list[str], skipped: list[str]) -> ReplayReport:
    replayed = []
    with original.open_store() as store_a, replay.open_store() as store_b:
        for name in names:
            run_a, run_b = store_a.runs.get(name), store_b.runs.get(name)
            comparison = None
            if run_a.run_state is RunState.FINISHED and run_b.run_state is RunState.FINISHED:
                comparison = compare_runs(_side(original, store_a, name), _side(replay, store_b, name))
            replayed.append(ReplayedRun(name, run_a.state, run_b.state,
                                        comparison.to_dict() if comparison else None,
                                        comparison.identical if comparison else None))
    return ReplayReport(str(original.path), str(replay.path), replayed, skipped)
