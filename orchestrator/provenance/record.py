"""A run's provenance record: built when the run finishes, kept in the store, read as JSON.

The record answers "what exactly was done?" without the machine it ran on: the protocol and
its plugin's version, the Python and library versions of the scheduler, the external programs'
versions, every param as the run stored it, the runs its inputs came from, each step with
its host, worker, batch job and accounting, who launched it, and the SHA-256 of every file
it wrote and of the raw files it read. Paths inside the project are relative to it.
"""

from __future__ import annotations

import getpass
import logging
import os
from datetime import datetime
from typing import Any

from orchestrator.errors import OrchestratorError
from orchestrator.plugins import PluginRegistry
from orchestrator.project import RUNS_DIR, Project
from orchestrator.provenance.fingerprints import (
    display_path,
    fingerprints,
    referenced_files,
    run_output_files,
)
from orchestrator.provenance.software import plugin_entry, program_versions, python_environment
from orchestrator.store import ProjectStore, RunRecord, StepRecord

log = logging.getLogger(__name__)

#: Name and version of the record's layout (bumped when a field changes meaning).
RECORD_FORMAT = {"name": "em-orchestrator/run-provenance", "version": 1}


def launching_user() -> str:
    """The user a run is recorded as launched by: the login name, or the uid when there is none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _run_section(store: ProjectStore, run: RunRecord) -> dict[str, Any]:
    return {"id": run.id, "name": run.name, "protocol": run.protocol, "state": run.state, "host": run.host,
            "params": run.params, "launched_by": store.runs.owner(run.id), "created_at": _time(run.created_at),
            "started_at": _time(run.started_at), "finished_at": _time(run.finished_at)}


def _step_section(step: StepRecord) -> dict[str, Any]:
    return {"name": step.name, "func": step.func, "hash": step.hash, "state": step.state, "attempt": step.attempt,
            "host": step.host, "worker": step.worker, "job_id": step.job_id, "gpus": step.gpus,
            "resources": step.resources, "started_at": _time(step.started_at),
            "finished_at": _time(step.finished_at), "duration_s": step.duration_s,
            "peak_memory_mb": step.peak_memory_mb, "accounting": step.accounting}


def _inputs_section(store: ProjectStore, run: RunRecord) -> list[dict[str, Any]]:
    inputs = []
    for link in store.runs.inputs(run.id):
        producer = store.runs.get(link.producer_run_id)
        inputs.append({"param": link.param, "run_id": producer.id, "run": producer.name,
                       "protocol": producer.protocol, "output": link.output_name})
    return inputs


def _outputs_section(store: ProjectStore, run: RunRecord) -> list[dict[str, Any]]:
    outputs = []
    for output in store.outputs.list(run.id):
        entry: dict[str, Any] = {"name": output.name, "type": output.type_name, "path": output.path,
                                 "value": output.value}
        if output.set_id is not None:
            entry["set_id"] = output.set_id
        outputs.append(entry)
    return outputs


def _read_files(store: ProjectStore, project: Project, run: RunRecord) -> tuple[list[dict[str, Any]],
                                                                                   list[dict[str, Any]]]:
    """Raw files the run's sets name outside the project's run folders (fingerprinted), and
    files in other runs' folders (referred to by run: they are that run's outputs)."""
    runs_dir = project.runs_dir
    own_dir = project.run_dir(run.name)
    raw, from_runs = [], []
    for path in referenced_files(store.engine, run.id, project.path):
        try:
            inside = path.relative_to(runs_dir)
        except ValueError:
            raw.append(path)
            continue
        if not path.is_relative_to(own_dir):
            from_runs.append({"path": display_path(path, project.path), "run": inside.parts[0]})
    return fingerprints(raw, project.path), from_runs


def build_record(store: ProjectStore, project: Project, registry: PluginRegistry, run_id: int) -> dict[str, Any]:
    """The provenance record of run ``run_id`` as it stands now (normally: just finished)."""
    run = store.runs.get(run_id)
    plugin = registry.plugin_of(run.protocol)
    run_dir = project.run_dir(run.name)
    raw, from_runs = _read_files(store, project, run)
    return {
        "format": RECORD_FORMAT,
        "run": _run_section(store, run),
        "software": {**python_environment(), "plugin": plugin_entry(plugin),
                     "programs": program_versions(plugin, run.host, store.host_programs.get(run.host))},
        "inputs": _inputs_section(store, run),
        "steps": [_step_section(step) for step in store.steps.list(run.id)],
        "outputs": _outputs_section(store, run),
        "files": {
            "written": fingerprints(run_output_files(run_dir), project.path),
            "read_raw": raw,
            "read_from_runs": from_runs,
        },
        "layout": {"runs_dir": RUNS_DIR, "run_dir": display_path(run_dir, project.path)},
    }


def record_provenance(store: ProjectStore, project: Project, registry: PluginRegistry, run_id: int) -> bool:
    """Build and keep run ``run_id``'s record; a failure is logged and reported, never raised
    (the run's results are already recorded, and stay so)."""
    try:
        store.provenance.put(run_id, build_record(store, project, registry, run_id))
    except (OrchestratorError, OSError, ValueError) as exc:
        log.warning("run %s: its provenance record could not be written: %s", run_id, exc)
        store.events.append("provenance", run_id=run_id, message=f"provenance not recorded: {exc}")
        return False
    return True

