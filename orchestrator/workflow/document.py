"""Workflow files: several runs described in one JSON document, created in order.

A workflow file looks like this (format version 2; version 1 is the same without ``format``,
``inputs`` and ``source``, and is still read)::

    {"format": {"name": "em-orchestrator/workflow", "version": 2},
     "description": "what it does",
     "inputs": {"count": {"label": "How many", "type": "int", "default": 3}},
     "runs": [
      {"name": "produce", "protocol": "testkit.produce", "params": {"count": {"$input": "count"}}},
      {"name": "derive", "protocol": "testkit.chain", "params": {"source": "produce.files"}}
    ]}

Each run's ``name`` becomes the run's name in the project, so a pointer param of a later
run can name an earlier run of the same file (``"produce.files"``), exactly as it would
name any run already in the project. A param may name an open input (``{"$input": NAME}``,
see :mod:`.inputs`) that is given a value when the workflow is imported (:meth:`Workflow.filled`).
``load_workflow`` checks the document's shape; ``check_workflow`` checks it against the
installed protocols (params, pointers, output names) and the project (names already taken)
before anything is written, and ``submit_workflow`` creates the runs, all or none, then
queues them. Every error names the file and the run at fault. The format's JSON Schema is
``orchestrator/workflow/workflow.schema.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.errors import NotFoundError, OrchestratorError, UsageError
from orchestrator.names import LOCAL_HOST, RULE, name_problem, shown
from orchestrator.objects.params import Pointer
from orchestrator.plugins import PluginRegistry
from orchestrator.project import Project
from orchestrator.scheduler import planner
from orchestrator.store import ProjectStore, RunRecord
from orchestrator.workflow.inputs import InputError, OpenInput, fill, parse_inputs, references, resolve_values

#: The format this version writes, and the versions it reads (a test loads a file of each).
FORMAT_NAME = "em-orchestrator/workflow"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
RUN_KEYS = frozenset({"name", "protocol", "params", "host", "comment"})
DOCUMENT_KEYS = frozenset({"format", "description", "inputs", "runs", "source"})


class WorkflowError(UsageError):
    """A workflow file is unreadable or describes runs that cannot be created."""


@dataclass(frozen=True)
class WorkflowRun:
    """One run of a workflow file; ``index`` is its position (1-based) for messages."""

    index: int
    name: str
    protocol: str
    params: dict[str, Any] = field(default_factory=dict)
    host: str | None = None
    comment: str = ""

    @property
    def label(self) -> str:
        return f"run {self.index} ({self.name!r})"


@dataclass(frozen=True)
class Workflow:
    path: Path
    runs: list[WorkflowRun]
    inputs: dict[str, OpenInput] = field(default_factory=dict)
    version: int = FORMAT_VERSION
    description: str = ""

    @property
    def open_inputs(self) -> dict[str, OpenInput]:
        """The inputs some run still names (all of them until :meth:`filled`)."""
        named = {name for run in self.runs for name in references(run.params).values()}
        return {name: item for name, item in self.inputs.items() if name in named}

    def filled(self, given: Mapping[str, Any], ask: Callable[[OpenInput], Any] | None = None) -> Workflow:
        """This workflow with every open input replaced by its value: given, asked for, or its
        default (see :func:`.inputs.resolve_values`)."""
        try:
            values = resolve_values(self.inputs, given, ask, where=str(self.path))
        except InputError as exc:
            raise WorkflowError(str(exc)) from None
        runs = [replace(run, params=fill(run.params, values)) for run in self.runs]
        return replace(self, runs=runs, inputs={})

    def error(self, message: str, run: WorkflowRun | None = None,
              cause: OrchestratorError | None = None) -> WorkflowError:
        """An error naming this file (and the run); it keeps the exit code of ``cause`` (3: not found)."""
        where = f"{self.path}: {run.label}" if run is not None else str(self.path)
        error = WorkflowError(f"{where}: {message}")
        if cause is not None:
            error.exit_code = cause.exit_code
        return error


def load_workflow(path: Path | str) -> Workflow:
    """Read and shape-check a workflow file (protocols and params are checked later)."""
    path = Path(path)
    return parse_workflow(read_document(path), path)


def read_document(path: Path) -> Any:
    """The decoded JSON of a workflow file (ours or another tool's), errors naming the file."""
    return decode_json(read_text_file(path), path)


def read_text_file(path: Path, what: str = "workflow file") -> str:
    """The text of a workflow file; WorkflowError naming it when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise WorkflowError(f"{path}: is a folder, not a {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"{path}: cannot read the {what} ({exc})") from None
    except ValueError as exc:  # a NUL in the name
        raise WorkflowError(f"{str(path)!r}: not a valid file name ({exc})") from None


class _NotJson(Exception):
    """What the decoder hooks raise for text that Python's json reads but JSON does not allow."""

    def __init__(self, token: str, problem: str) -> None:
        super().__init__(problem)
        self.token, self.problem = token, problem


def _refuse_constant(name: str) -> Any:
    raise _NotJson(name, f"{name} is not a JSON value (JSON numbers are finite)")


def _int(digits: str) -> int:
    if len(digits.lstrip("-")) > _MAX_INT_DIGITS:  # Python would raise a bare ValueError
        raise _NotJson(digits, f"a number of {len(digits)} digits is too long (at most {_MAX_INT_DIGITS})")
    return int(digits)


_MAX_INT_DIGITS = 4000  # below Python's own limit on int(str) (4300)


def _float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise _NotJson(text, f"the number {text[:20]}{'...' if len(text) > 20 else ''} is too large for a float")
    return number


def decode_json(text: str, path: Path) -> Any:
    """Strict JSON with errors naming the file and line: no NaN, no endless digits or nesting."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_int, parse_float=_float)
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except _NotJson as exc:
        line = text.count("\n", 0, max(text.find(exc.token), 0)) + 1
        raise WorkflowError(f"{path}: line {line}: {exc.problem}") from None
    except RecursionError:
        raise WorkflowError(f"{path}: not a workflow file: JSON nested too deeply") from None


def parse_workflow(document: Any, path: Path) -> Workflow:
    """The runs of a decoded workflow document; ``path`` is only used in messages."""
    if not isinstance(document, dict) or not isinstance(document.get("runs"), list):
        raise WorkflowError(f'{path}: expected an object with a list "runs": {{"runs": [{{"name": ..., '
                            f'"protocol": ..., "params": {{...}}}}]}}')
    version = _format_version(document, path)
    if version >= 2:
        unknown = sorted(set(document) - DOCUMENT_KEYS)
        if unknown:
            raise WorkflowError(f"{path}: unknown key(s) {', '.join(unknown)}; a workflow has: "
                                f"{', '.join(sorted(DOCUMENT_KEYS))}")
    description = document.get("description", "")
    if not isinstance(description, str):
        raise WorkflowError(f'{path}: "description" must be a text')
    try:
        inputs = parse_inputs(document, str(path)) if version >= 2 else {}
    except InputError as exc:
        raise WorkflowError(str(exc)) from None
    if not document["runs"]:
        raise WorkflowError(f"{path}: the workflow has no runs")
    runs: list[WorkflowRun] = []
    seen: set[str] = set()
    for index, entry in enumerate(document["runs"], start=1):
        runs.append(_parse_run(path, index, entry, seen, inputs))
    return Workflow(path, runs, inputs, version, description)


def _format_version(document: dict[str, Any], path: Path) -> int:
    """The format version of a document: 1 when it names none (files written before versions)."""
    if "format" not in document:
        return 1
    declared = document["format"]
    if (not isinstance(declared, dict) or declared.get("name") != FORMAT_NAME
            or not isinstance(declared.get("version"), int) or isinstance(declared.get("version"), bool)):
        raise WorkflowError(f'{path}: "format" must be {{"name": "{FORMAT_NAME}", "version": {FORMAT_VERSION}}}, '
                            f"got {declared!r}"[:300])
    version: int = declared["version"]
    if version not in READABLE_VERSIONS:
        newer = " (written by a newer em-orchestrator: upgrade it)" if version > FORMAT_VERSION else ""
        raise WorkflowError(f"{path}: workflow format version {version} cannot be read{newer}; this version "
                            f"reads {', '.join(map(str, READABLE_VERSIONS))}")
    return version


def _parse_run(path: Path, index: int, entry: Any, seen: set[str], inputs: Mapping[str, OpenInput]) -> WorkflowRun:
    where = f"{path}: run {index}"
    if not isinstance(entry, dict):
        raise WorkflowError(f"{where}: expected an object with name, protocol and params, got {type(entry).__name__}")
    name = entry.get("name")
    if isinstance(name, str) and name:
        where = f"{where} ({shown(name)})"
    unknown = sorted(set(entry) - RUN_KEYS)
    if unknown:
        raise WorkflowError(f"{where}: unknown key(s) {', '.join(unknown)}; a run has: {', '.join(sorted(RUN_KEYS))}")
    if not isinstance(name, str) or not name.strip():
        raise WorkflowError(f'{where}: "name" is missing or not a string (later runs point to a run by its name)')
    problem = name_problem(name, is_run=True)  # the one set of rules for names (orchestrator.names)
    if problem is not None:
        raise WorkflowError(f'{where}: "name" {problem}; {RULE}')
    if name in seen:
        raise WorkflowError(f"{where}: the name {name!r} is used by an earlier run of the file")
    seen.add(name)
    protocol = entry.get("protocol")
    if not isinstance(protocol, str) or not protocol:
        raise WorkflowError(f'{where}: "protocol" is missing or not a string')
    params = entry.get("params", {})
    if not isinstance(params, dict):
        raise WorkflowError(f'{where}: "params" must be an object of param name -> value')
    host = entry.get("host")
    if host is not None and (not isinstance(host, str) or not host):
        raise WorkflowError(f'{where}: "host" must be the name of a host of the hosts files')
    comment = entry.get("comment", "")
    if not isinstance(comment, str):
        raise WorkflowError(f'{where}: "comment" must be a text')
    try:
        named = references(params)
    except InputError as exc:
        raise WorkflowError(f"{where}: {exc}") from None
    for param, input_name in named.items():
        if input_name not in inputs:
            raise WorkflowError(f"{where}: param '{param}' names input {input_name!r}, which the workflow's "
                                f'"inputs" do not declare')
    return WorkflowRun(index, name, protocol, dict(params), host, comment)


def check_workflow(workflow: Workflow, registry: PluginRegistry, store: ProjectStore, project: Project) -> None:
    """Check every run against its protocol and the project before anything is created."""
    still_open = workflow.open_inputs
    if still_open:
        workflow.filled({})  # raises the error that lists the inputs without a value
    existing = {run.name for run in store.runs.list()}
    outputs_of: dict[str, Mapping[str, str]] = {}  # workflow run name -> declared outputs
    for position, run in enumerate(workflow.runs):
        if run.name in existing:
            raise workflow.error("a run with this name already exists in the project "
                                 f"{project.name}; rename it in the file or delete that run", run)
        try:
            protocol = registry.protocol(run.protocol)
            params = protocol.validate(run.params, base_dir=project.path)
        except OrchestratorError as exc:
            raise workflow.error(str(exc), run, exc) from None
        for param_name, pointer in params.pointers().items():
            _check_pointer(workflow, run, position, param_name, pointer, outputs_of, store, registry)
        outputs_of[run.name] = dict(protocol.outputs)


def _check_pointer(workflow: Workflow, run: WorkflowRun, position: int, param: str, pointer: Pointer,
                   outputs_of: Mapping[str, Mapping[str, str]], store: ProjectStore,
                   registry: PluginRegistry) -> None:
    target = str(pointer.run)
    if target in outputs_of:
        declared = outputs_of[target]
        if pointer.output not in declared:
            raise workflow.error(f"param '{param}': run {target!r} of this file has no output "
                                 f"'{pointer.output}'; it declares: {', '.join(declared) or 'none'}", run)
        return
    later = [r.name for r in workflow.runs[position:]]
    if target in later:
        raise workflow.error(f"param '{param}' points to run {target!r}, which comes at or after this run "
                             "in the file; list the runs it depends on first", run)
    try:
        producer = store.runs.get(pointer.run)
        declared = registry.protocol(producer.protocol).outputs
    except NotFoundError as exc:
        raise workflow.error(f"param '{param}': {exc}", run, exc) from None
    if pointer.output not in declared:
        raise workflow.error(f"param '{param}': run {producer.name} ({producer.protocol}) has no output "
                             f"'{pointer.output}'; it declares: {', '.join(declared) or 'none'}", run)


def submit_workflow(workflow: Workflow, registry: PluginRegistry, store: ProjectStore,
                    project: Project, host: str | None = None) -> list[RunRecord]:
    """Create every run of the workflow (all or none), then queue them in file order.

    ``host`` (``orch run --host``) overrides every run's own ``host`` key."""
    check_workflow(workflow, registry, store, project)
    created: list[RunRecord] = []
    try:
        for run in workflow.runs:
            try:
                created.append(planner.create_run(store, project, registry, run.protocol, run.params,
                                                  name=run.name, host=host or run.host or LOCAL_HOST, queue=False))
            except OrchestratorError as exc:
                raise workflow.error(str(exc), run, exc) from None
    except BaseException:
        for record in reversed(created):  # nothing half-made stays behind
            store.runs.delete(record.id)
            _remove_if_empty(project.run_dir(record.name))
        raise
    for record in created:
        store.lifecycle.queue_run(record.id, message=f"queued from workflow {workflow.path.name}")
    return [store.runs.get(record.id) for record in created]


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
