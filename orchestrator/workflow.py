"""Workflow files: several runs described in one JSON document, created in order.

A workflow file looks like this::

    {"runs": [
      {"name": "produce", "protocol": "testkit.produce", "params": {"count": 3}},
      {"name": "derive", "protocol": "testkit.chain", "params": {"source": "produce.files"}}
    ]}

Each run's ``name`` becomes the run's name in the project, so a pointer param of a later
run can name an earlier run of the same file (``"produce.files"``), exactly as it would
name any run already in the project. ``load_workflow`` checks the document's shape;
``check_workflow`` checks it against the installed protocols (params, pointers, output
names) and the project (names already taken) before anything is written, and
``submit_workflow`` creates the runs, all or none, then queues them. Every error names the
file and the run at fault.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import NotFoundError, OrchestratorError, UsageError
from orchestrator.names import LOCAL_HOST, RULE, name_problem, shown
from orchestrator.objects.params import Pointer
from orchestrator.plugins import PluginRegistry
from orchestrator.project import Project
from orchestrator.scheduler import planner
from orchestrator.store import ProjectStore, RunRecord

RUN_KEYS = frozenset({"name", "protocol", "params", "host"})


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

    @property
    def label(self) -> str:
        return f"run {self.index} ({self.name!r})"


@dataclass(frozen=True)
class Workflow:
    path: Path
    runs: list[WorkflowRun]

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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowError(f"{path}: no such workflow file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"{path}: cannot read the workflow file ({exc})") from None
    except ValueError as exc:  # a NUL in the name
        raise WorkflowError(f"{str(path)!r}: not a valid file name ({exc})") from None
    return parse_workflow(_decode_json(text, path), path)


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


def _decode_json(text: str, path: Path) -> Any:
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
    if not document["runs"]:
        raise WorkflowError(f"{path}: the workflow has no runs")
    runs: list[WorkflowRun] = []
    seen: set[str] = set()
    for index, entry in enumerate(document["runs"], start=1):
        runs.append(_parse_run(path, index, entry, seen))
    return Workflow(path, runs)


def _parse_run(path: Path, index: int, entry: Any, seen: set[str]) -> WorkflowRun:
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
    return WorkflowRun(index, name, protocol, dict(params), host)


def check_workflow(workflow: Workflow, registry: PluginRegistry, store: ProjectStore, project: Project) -> None:
    """Check every run against its protocol and the project before anything is created."""
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
