"""The processing behind a run's result: it and every run before it, back to the raw data.

Each step is a run with its protocol, plugin version, params, the runs its inputs came from,
host, times and the external programs' versions its record names; the runs that read raw
data list those files with their SHA-256. Paths are made portable on the way out: inside the
project relative to it, under the home folder as ``~/...``, so that a bundle meant for an
archive does not carry the layout of the machine it was written on.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.project import Project
from orchestrator.provenance.lineage import lineage
from orchestrator.store import ProjectStore


def portable(value: Any, project_dir: Path) -> Any:
    """``value`` with every absolute path in it made relative to the project, or to ``~``."""
    if isinstance(value, dict):
        return {key: portable(item, project_dir) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [portable(item, project_dir) for item in value]
    if not isinstance(value, str) or not value.startswith("/"):
        return value
    path = Path(value)
    if path.is_relative_to(project_dir):
        return path.relative_to(project_dir).as_posix() or "."
    home = Path(os.path.expanduser("~"))
    if home != Path("/") and path.is_relative_to(home):
        return "~/" + path.relative_to(home).as_posix()
    return value


def utc_text(value: datetime | None) -> str | None:
    """A store time as ISO 8601 UTC to the second (the store writes UTC; SQLite returns it without zone)."""
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(microsecond=0).isoformat()


def processing_steps(store: ProjectStore, project: Project, run_ref: int | str) -> list[dict[str, Any]]:
    """The runs behind ``run_ref`` and it, in the order they ran (a producer is always older
    than the runs reading it, so ids order them), each as a plain dict."""
    steps = []
    for node in sorted(lineage(store, run_ref), key=lambda n: n.run_id):
        run = store.runs.get(node.run_id)
        record = store.provenance.get(node.run_id) or {}
        software = record.get("software") or {}
        programs = {name: entry.get("version") for name, entry in (software.get("programs") or {}).items()}
        step: dict[str, Any] = {
            "run": run.name, "protocol": run.protocol, "plugin": software.get("plugin"),
            "params": portable(run.params, project.path),
            "inputs": [f"{link['param']} = {link['run']}.{link['output']}" for link in node.inputs],
            "host": run.host, "started_at": utc_text(run.started_at), "finished_at": utc_text(run.finished_at),
        }
        if programs:
            step["programs"] = programs
        if node.raw_files:
            step["raw_files"] = [{**entry, "path": portable(entry["path"], project.path)} for entry in node.raw_files]
        if not node.recorded:
            step["note"] = "no provenance record: the run has not finished, or finished before records were kept"
        steps.append(step)
    return steps


def recorded_fingerprints(store: ProjectStore, run_ids: list[int]) -> dict[str, tuple[str, str]]:
    """Project-relative path -> (run, SHA-256) of every file the runs ``run_ids`` wrote, as their
    records fingerprinted them when each finished."""
    known: dict[str, tuple[str, str]] = {}
    for run_id in run_ids:
        record = store.provenance.get(run_id)
        if not record:
            continue
        for entry in record.get("files", {}).get("written", []):
            if entry.get("sha256"):
                known[entry["path"]] = (record["run"]["name"], entry["sha256"])
    return known


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def steps_text(steps: list[dict[str, Any]]) -> list[str]:
    """The steps as README lines: one paragraph per run, its params one per line."""
    lines = []
    for number, step in enumerate(steps, 1):
        plugin = step.get("plugin") or {}
        version = f", {plugin.get('name')} {plugin.get('version')}" if plugin else ""
        when = ""
        if step.get("started_at") and step.get("finished_at"):
            when = f", {step['started_at'][:19].replace('T', ' ')} to {step['finished_at'][11:19]} UTC"
        lines.append(f"  {number}. {step['run']} ({step['protocol']}{version}) on host {step['host']}{when}")
        linked = {text.split(" = ", 1)[0] for text in step["inputs"]}
        for text in step["inputs"]:
            lines.append(f"       {text}  (input: run.output)")
        for name, value in step["params"].items():
            if name not in linked:
                lines.append(f"       {name} = {_value_text(value)}")
        for name, value in (step.get("programs") or {}).items():
            lines.append(f"       program {name}: {value or 'version unknown'}")
        raw = step.get("raw_files") or []
        if raw:
            lines.append(f"       raw data read: {len(raw)} file(s)")
            for entry in raw[:10]:
                lines.append(f"         {entry['path']}  sha256 {entry.get('sha256') or entry.get('error')}")
            if len(raw) > 10:
                lines.append(f"         ... and {len(raw) - 10} more (processing.json lists all)")
        if step.get("note"):
            lines.append(f"       note: {step['note']}")
    return lines
