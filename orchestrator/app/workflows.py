"""Workflows as files: export a project's runs, import a workflow (ours or Scipion's) as runs.

Export writes no absolute path, user name or secret (see :mod:`orchestrator.workflow.export`);
import fills the params the file leaves open (given values, a prompt, or defaults), converts a
Scipion workflow first (reporting what it could not map), then creates the runs all or none
and queues them, like ``orch run --workflow``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from orchestrator import workflow
from orchestrator.app.access import ProjectTarget, project_store
from orchestrator.app.records import Record, RunInfo
from orchestrator.app.scheduler import ensure_scheduler
from orchestrator.plugins import PluginRegistry, discover
from orchestrator.workflow.export import export_workflow as _export
from orchestrator.workflow.inputs import OpenInput

Ask = Callable[[OpenInput], Any]


@dataclass(frozen=True)
class OmittedRun(Record):
    """A run of a foreign workflow that was left out, and why."""

    source_id: str
    label: str
    kind: str
    reason: str


@dataclass(frozen=True)
class ImportOutcome(Record):
    """The runs an import created and queued, and what a conversion left out or changed."""

    runs: list[RunInfo]
    source_format: str
    omitted: list[OmittedRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WorkflowPlan(Record):
    """A workflow file read and converted, before any run exists: what ``import`` would create."""

    path: str
    source_format: str
    version: int
    description: str
    runs: list[dict[str, Any]]
    inputs: dict[str, dict[str, Any]]
    omitted: list[OmittedRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def export_workflow(target: ProjectTarget, runs: Sequence[int | str] | None = None, *,
                    open_params: Iterable[str] = (), registry: PluginRegistry | None = None) -> dict[str, Any]:
    """The project's runs (or ``runs``) as a workflow document (format version 2)."""
    with project_store(target) as (project, store):
        return _export(store, project, registry or discover(), runs, open_params)


def read_workflow(source: str | PathLike[str] | Mapping[str, Any], *, registry: PluginRegistry | None = None,
                  source_name: str = "workflow.json") -> tuple[workflow.Workflow, WorkflowPlan]:
    """Read a workflow file (or decoded document): ours of any readable version, or Scipion's
    exported workflow or template, converted. Nothing is created."""
    path = Path(source_name) if isinstance(source, Mapping) else Path(source)
    description = ""
    if isinstance(source, Mapping):
        document: Any = dict(source)
    elif path.name.endswith(".template"):  # a Scipion template: description lines, then JSON with ~fields~
        from orchestrator.interop.scipion import load_scipion_file

        scipion_file = load_scipion_file(path)
        document, description = scipion_file.document, scipion_file.description
    else:
        document = workflow.read_document(path)
    source_format = "em-orchestrator"
    omitted: list[OmittedRun] = []
    notes: list[str] = []
    if not isinstance(document, dict) and _is_scipion(document):  # Scipion's files are lists of protocols
        from orchestrator.interop.scipion import convert_scipion_workflow

        conversion = convert_scipion_workflow(document, path, registry or discover(), description=description)
        document, source_format, notes = conversion.workflow, "scipion", list(conversion.notes)
        omitted = [OmittedRun(str(item.scipion_id), item.label, item.class_name, item.reason)
                   for item in conversion.omitted]
    parsed = workflow.parse_workflow(document, path)
    plan = WorkflowPlan(str(path), source_format, parsed.version, parsed.description,
                        [{"name": run.name, "protocol": run.protocol, "params": run.params, "host": run.host}
                         for run in parsed.runs],
                        {name: item.to_json() for name, item in parsed.open_inputs.items()}, omitted, notes)
    return parsed, plan


def _is_scipion(document: Any) -> bool:
    from orchestrator.interop.scipion import is_scipion_workflow

    return is_scipion_workflow(document)


def import_workflow(target: ProjectTarget, source: str | PathLike[str] | Mapping[str, Any], *,
                    values: Mapping[str, Any] | None = None, ask: Ask | None = None, host: str | None = None,
                    start_scheduler: bool = True, registry: PluginRegistry | None = None,
                    source_name: str = "workflow.json") -> ImportOutcome:
    """Create and queue the runs of a workflow file, all or none.

    Open inputs get ``values[name]``, else ``ask(input)`` when given, else their default; an
    input left without a value is an error naming it (and ``--set NAME=VALUE``). ``host``
    overrides every run's host."""
    registry = registry or discover()
    parsed, plan = read_workflow(source, registry=registry, source_name=source_name)
    filled = parsed.filled(dict(values or {}), ask)
    with project_store(target) as (project, store):
        runs = workflow.submit_workflow(filled, registry, store, project, host=host)
    if start_scheduler:
        ensure_scheduler(project)
    return ImportOutcome([RunInfo.of(run) for run in runs], plan.source_format, plan.omitted, plan.notes)
