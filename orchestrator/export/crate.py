"""A Workflow Run RO-Crate of a project's runs: ``orch export PROJECT --crate DIR``.

The crate follows the Workflow Run Crate profile 0.5 (with Process Run Crate 0.5 and
Workflow RO-Crate 1.0, on RO-Crate 1.1), so that tools which read those (WorkflowHub,
runcrate, rocrate-validator) can tell what was done:

* ``workflow.json``: the runs as a workflow document (:func:`orchestrator.workflow.export.export_workflow`),
  the crate's main entity, and one ``CreateAction`` that ran it, from the raw data read to
  the last runs' outputs;
* one ``CreateAction`` per run: its protocol (a ``SoftwareApplication`` with the plugin's
  version) as instrument; as object the outputs of other runs it read, the raw files and its
  params (``PropertyValue``); as result its outputs and every file it wrote; the user who
  launched it as agent (a ``Person`` known only by the recorded name); start and end times;
* ``provenance/RUN.json``: each run's provenance record, about its action;
* every file named with its size and SHA-256 (:mod:`.crate_files`), referenced, or copied
  in with ``with_data``.

The metadata file is written last: a crate without it was not finished.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rocrate.model.computerlanguage import ComputerLanguage
from rocrate.model.contextentity import ContextEntity
from rocrate.model.entity import Entity
from rocrate.model.person import Person
from rocrate.model.softwareapplication import SoftwareApplication
from rocrate.rocrate import ROCrate

from orchestrator import __version__
from orchestrator.errors import NotFoundError
from orchestrator.export.crate_files import CrateFiles
from orchestrator.export.destination import Destination, ProgressCallback
from orchestrator.export.errors import ExportError
from orchestrator.export.processing import portable, utc_text
from orchestrator.plugins import PluginRegistry
from orchestrator.project import Project
from orchestrator.store import ProjectStore, RunRecord
from orchestrator.workflow.export import export_workflow

RO_CRATE_VERSION = "1.1"
PROFILES = (("https://w3id.org/ro/wfrun/process/0.5", "Process Run Crate", "0.5"),
            ("https://w3id.org/ro/wfrun/workflow/0.5", "Workflow Run Crate", "0.5"),
            ("https://w3id.org/workflowhub/workflow-ro-crate/1.0", "Workflow RO-Crate", "1.0"))
WORKFLOW_FILE, METADATA_FILE, README_FILE = "workflow.json", "ro-crate-metadata.json", "README.md"
_BIOSCHEMAS_WORKFLOW = "https://bioschemas.org/profiles/ComputationalWorkflow/1.0-RELEASE"


@dataclass
class CrateSummary:
    """What an export wrote: the runs, how many of their files (and folders) it names, how many
    it copied in, and any warnings."""

    folder: Path
    runs: list[str]
    files: int = 0
    copied_files: int = 0
    copied_bytes: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "runs": self.runs, "files": self.files,
                "copied_files": self.copied_files, "copied_bytes": self.copied_bytes, "warnings": self.warnings}


def chosen_runs(store: ProjectStore, refs: Sequence[int | str] | None) -> list[tuple[RunRecord, dict[str, Any]]]:
    """The runs to export with their provenance records: those named, or every finished run."""
    if refs:
        runs = [store.runs.get(ref) for ref in refs]  # NotFoundError names a run that is not there
    else:
        runs = [run for run in store.runs.list() if run.state == "finished"]
        if not runs:
            raise ExportError("the project has no finished run to export")
    chosen, seen = [], set()
    for run in sorted(runs, key=lambda r: r.id):
        if run.id in seen:
            continue
        seen.add(run.id)
        record = store.provenance.get(run.id)
        if record is None:
            why = f"it is {run.state}" if run.state != "finished" else "it finished before records were kept"
            raise ExportError(f"run {run.name} has no provenance record ({why}); a crate describes finished runs: "
                              "leave it out of --runs")
        chosen.append((run, record))
    return chosen


def write_run_crate(store: ProjectStore, project: Project, registry: PluginRegistry, folder: str | Path,
                    runs: Sequence[int | str] | None = None, with_data: bool = False, license: str | None = None,
                    progress: ProgressCallback | None = None) -> CrateSummary:
    """Write the crate of ``runs`` (default: every finished run) into ``folder`` (new or empty);
    on failure what was written is removed again."""
    chosen = chosen_runs(store, runs)
    document = export_workflow(store, project, registry, [run.id for run, _ in chosen])
    destination = Destination.prepare(folder)
    try:
        return _CrateWriter(store, project, destination, with_data, progress).write(chosen, document, license)
    except BaseException:
        destination.discard()
        raise


class _CrateWriter:
    def __init__(self, store: ProjectStore, project: Project, destination: Destination, with_data: bool,
                 progress: ProgressCallback | None) -> None:
        self.store = store
        self.project = project
        self.destination = destination
        self.crate = ROCrate(version=RO_CRATE_VERSION)
        # RO-Crate 1.1's context predates schema.org's sha256; the term is added as 1.2 defines it
        self.crate.metadata.extra_terms["sha256"] = "http://schema.org/sha256"
        self.files = CrateFiles(self.crate, project.path, destination, with_data, progress)
        self.people: dict[str, Entity] = {}
        self.tools: dict[str, Entity] = {}

    def write(self, chosen: list[tuple[RunRecord, dict[str, Any]]], document: dict[str, Any],
              license: str | None) -> CrateSummary:
        crate = self.crate
        for _run, record in chosen:
            self.files.learn(record["files"]["written"])
            self.files.learn(record["files"]["read_raw"])
        self._describe_root(chosen, license)
        workflow = self._workflow(document)
        actions = [self._run_action(run, record) for run, record in chosen]
        main = self._workflow_action(workflow, chosen)
        crate.root_dataset["mentions"] = [main, *actions]
        readme = self.destination.write_text(README_FILE, self._readme(chosen))
        crate.add_file(dest_path=readme.name, properties={
            "name": "About this crate", "encodingFormat": "text/markdown", "about": crate.root_dataset})
        metadata = crate.metadata.generate()
        self.destination.write_text(METADATA_FILE, json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
        summary = CrateSummary(self.destination.root, [run.name for run, _ in chosen],
                               files=self.files.count, copied_files=self.files.copied,
                               copied_bytes=self.files.copied_bytes, warnings=list(self.files.warnings))
        if self.files.missing:
            summary.warnings.append(f"{len(self.files.missing)} file(s) named by the records are no longer there "
                                    f"and were referenced, not copied: {', '.join(self.files.missing[:5])}")
        return summary

    def _describe_root(self, chosen: list[tuple[RunRecord, dict[str, Any]]], license: str | None) -> None:
        crate = self.crate
        crate.name = f"{self.project.name}: {len(chosen)} run(s) of em-orchestrator"
        crate.description = (f"The runs of project {self.project.name} as a Workflow Run RO-Crate: the workflow they "
                             "form, each run's protocol, params, inputs, outputs (with SHA-256) and provenance record. "
                             f"Written by em-orchestrator {__version__}.")
        crate.datePublished = datetime.now(UTC).replace(microsecond=0).isoformat()
        if license:
            uri = license if "://" in license else f"https://spdx.org/licenses/{quote(license)}"
            crate.license = crate.add(ContextEntity(crate, uri, properties={
                "@type": "CreativeWork", "name": license, "identifier": license}))
        else:
            crate.license = crate.add(ContextEntity(crate, "#license-not-chosen", properties={
                "@type": "CreativeWork", "name": "No license chosen",
                "description": "The crate was exported without a license (orch export --license): "
                               "ask the project's owners before reusing its data."}))
        crate.root_dataset["conformsTo"] = [
            crate.add(ContextEntity(crate, uri, properties={"@type": "CreativeWork", "name": name, "version": version}))
            for uri, name, version in PROFILES]

    def _workflow(self, document: dict[str, Any]) -> Entity:
        crate = self.crate
        self.destination.write_text(WORKFLOW_FILE, json.dumps(document, indent=2) + "\n")
        language = crate.add(ComputerLanguage(crate, "#em-orchestrator-workflow", properties={
            "name": "em-orchestrator workflow", "alternateName": document["format"]["name"],
            "version": str(document["format"]["version"])}))
        return crate.add_workflow(dest_path=WORKFLOW_FILE, main=True, lang=language, properties={
            "name": f"Workflow of project {self.project.name}", "version": __version__,
            "description": document.get("description", ""), "encodingFormat": "application/json",
            "conformsTo": {"@id": _BIOSCHEMAS_WORKFLOW}})

    def _person(self, name: str | None) -> Entity:
        label = name or "unknown user"
        if label not in self.people:
            self.people[label] = self.crate.add(Person(self.crate, "#person-" + quote(label, safe=""),
                                                       properties={"name": label}))
        return self.people[label]

    def _tool(self, protocol: str, plugin: dict[str, Any]) -> Entity:
        if protocol not in self.tools:
            self.tools[protocol] = self.crate.add(SoftwareApplication(self.crate, "#protocol-" + quote(protocol), {
                "name": protocol, "softwareVersion": str(plugin.get("version") or "unknown"),
                "description": f"protocol {protocol} of the em-orchestrator plugin {plugin.get('name')}"}))
        return self.tools[protocol]

    def _output_entity(self, run: RunRecord, output: str) -> Entity:
        """A run's output: its file when it has one, else the set or value it is in the project store."""
        record = next((o for o in self.store.outputs.list(run.id) if o.name == output), None)
        what = f"output {output} of run {run.name}"
        if record is not None and record.path:
            location = self.project.run_dir(run.name) / record.path
            path = portable(str(location), self.project.path)
            if location.is_dir():
                return self.files.folder(path, what + f" ({record.type_name})")
            return self.files.entity(path, what + f" ({record.type_name})")
        identifier = "#output-" + quote(f"{run.name}.{output}")
        entity = self.crate.get(identifier)
        if entity is None:
            kind = record.type_name if record is not None else "output"
            size = (record.value or {}).get("size") if record is not None and isinstance(record.value, dict) else None
            entity = self.crate.add(ContextEntity(self.crate, identifier, properties={
                "@type": "CreativeWork", "name": f"{run.name}.{output}",
                "description": f"{what}: a {kind}" + (f" of {size} items" if size is not None else "")
                               + " kept in the project's store"}))
        return entity

    def _input_entity(self, item: dict[str, Any]) -> Entity:
        """The output a run read, as its record names it (``run_id``, ``run``, ``output``); a run
        deleted since is still named, from the record."""
        try:
            producer = self.store.runs.get(item["run_id"])
        except NotFoundError:
            identifier = "#output-" + quote(f"{item['run']}.{item['output']}")
            return self.crate.get(identifier) or self.crate.add(ContextEntity(self.crate, identifier, properties={
                "@type": "CreativeWork", "name": f"{item['run']}.{item['output']}",
                "description": f"output {item['output']} of run {item['run']}, which is no longer in the project"}))
        return self._output_entity(producer, item["output"])

    def _params(self, run: RunRecord) -> list[Entity]:
        values = []
        for name, value in run.params.items():
            shown = value if isinstance(value, str | int | float | bool) else json.dumps(value)
            values.append(self.crate.add(ContextEntity(self.crate, "#param-" + quote(f"{run.name}.{name}"), properties={
                "@type": "PropertyValue", "name": name, "value": portable(shown, self.project.path)})))
        return values

    def _run_action(self, run: RunRecord, record: dict[str, Any]) -> Entity:
        crate, section, files = self.crate, record["run"], record["files"]
        inputs = [self._input_entity(item) for item in record["inputs"]]
        inputs += [self.files.entity(item["path"]) for item in files["read_raw"]]
        inputs += [self.files.entity(item["path"], f"written by run {item['run']}") for item in files["read_from_runs"]]
        results = [self._output_entity(run, output["name"]) for output in record["outputs"]]
        results += [self.files.entity(item["path"]) for item in files["written"]]
        steps = record["steps"]
        action = crate.add_action(self._tool(run.protocol, record["software"]["plugin"]),
                                  identifier="#run-" + quote(run.name),
                                  properties={"name": f"Run {run.name} ({run.protocol})",
                                              "description": f"{run.protocol} run {run.name} on host {run.host}: "
                                                             f"{len(steps)} step(s), params "
                                                             f"{_params_text(portable(run.params, self.project.path))}",
                                              "agent": self._person(section.get("launched_by"))})
        _set(action, "object", _unique(inputs) + self._params(run))
        _set(action, "result", _unique(results))
        _times(action, section.get("started_at") or section.get("created_at"), section.get("finished_at"))
        record_file = self.destination.write_text(f"provenance/{run.name}.json", json.dumps(record, indent=2) + "\n")
        crate.add_file(dest_path=record_file.name, properties={
            "name": f"Provenance record of run {run.name}", "encodingFormat": "application/json",
            "sha256": record_file.sha256, "contentSize": str(record_file.size), "about": action})
        return action

    def _workflow_action(self, workflow: Entity, chosen: list[tuple[RunRecord, dict[str, Any]]]) -> Entity:
        """The workflow's run: the data that entered it, the outputs no exported run read further."""
        exported = {run.id for run, _ in chosen}
        read: set[tuple[int, str]] = set()
        entering: list[Entity] = []
        for _run, record in chosen:
            entering += [self.files.entity(item["path"]) for item in record["files"]["read_raw"]]
            for item in record["inputs"]:
                read.add((item["run_id"], item["output"]))
                if item["run_id"] not in exported:
                    entering.append(self._input_entity(item))
        final = [self._output_entity(run, output["name"]) for run, record in chosen
                 for output in record["outputs"] if (run.id, output["name"]) not in read]
        people = _unique([self._person(record["run"].get("launched_by")) for _run, record in chosen])
        action = self.crate.add_action(workflow, identifier="#workflow-run", properties={
            "name": f"Run of the workflow of project {self.project.name}",
            "description": f"{len(chosen)} run(s): " + ", ".join(f"{run.name} ({run.protocol})" for run, _ in chosen)})
        _set(action, "agent", people)
        _set(action, "object", _unique(entering))
        _set(action, "result", _unique(final))
        starts = [t for _r, rec in chosen if (t := rec["run"].get("started_at") or rec["run"].get("created_at"))]
        ends = [t for _r, rec in chosen if (t := rec["run"].get("finished_at"))]
        _times(action, min(starts) if starts else None, max(ends) if ends else None)
        return action

    def _readme(self, chosen: list[tuple[RunRecord, dict[str, Any]]]) -> str:
        lines = [f"# {self.crate.name}", "", self.crate.description or "", "",
                 f"- `{WORKFLOW_FILE}`: the runs as an em-orchestrator workflow (`orch run --workflow` replays it)",
                 f"- `{METADATA_FILE}`: what was done, as a Workflow Run RO-Crate 0.5",
                 "- `provenance/`: each run's provenance record (software, params, steps, files and SHA-256)",
                 "", "| run | protocol | finished | launched by |", "| --- | --- | --- | --- |"]
        for run, record in chosen:
            lines.append(f"| {run.name} | {run.protocol} | {utc_text(run.finished_at) or '-'} | "
                         f"{record['run'].get('launched_by') or '-'} |")
        return "\n".join(lines) + "\n"


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in params.items()) or "none"


def _unique(entities: list[Entity]) -> list[Entity]:
    seen: dict[str, Entity] = {}
    for entity in entities:
        seen.setdefault(entity.id, entity)
    return list(seen.values())


def _set(action: Entity, key: str, entities: list[Entity]) -> None:
    """One entity as itself, several as a list, none not at all (RO-Crate 1.1 prefers no singleton lists)."""
    if len(entities) == 1:
        action[key] = entities[0]
    elif entities:
        action[key] = entities


def _times(action: Entity, start: str | None, end: str | None) -> None:
    """ISO 8601 to the second with the UTC offset written out, as the Process Run Crate checks them."""
    for key, value in (("startTime", start), ("endTime", end)):
        if value:
            stamp = datetime.fromisoformat(value)
            stamp = stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)
            action[key] = stamp.astimezone(UTC).replace(microsecond=0).isoformat()
