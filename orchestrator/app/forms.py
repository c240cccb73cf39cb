"""What a form that creates a run needs: the protocols to choose from, the outputs a pointer may
name, an earlier run's params to start from, and the checks of ``orch run`` with each problem
filed under the param it is about.

A form sends every field as text, as a command line does (``box_size=64``): the values go through
the same :meth:`Protocol.validate` and :func:`~orchestrator.app.runs.submit_run` as ``orch run``.
What a form adds is *where* a problem goes: :class:`FormRejected` holds the messages by param
(``"param 'box_size': must be >= 8"`` goes beside ``box_size``), the run's name and host apart,
and what belongs to no field. The hosts a run may go to are in :mod:`orchestrator.app.form_hosts`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.app.access import ProjectTarget, load_project, project_store
from orchestrator.app.plugins import PluginDetail, list_plugins, show_plugin
from orchestrator.app.records import RunInfo
from orchestrator.app.runs import submit_run
from orchestrator.errors import NotFoundError, UsageError
from orchestrator.hosts.errors import HostError
from orchestrator.names import LOCAL_HOST, RULE, name_problem
from orchestrator.objects.params import ParamValidationError, Pointer, PointerParam
from orchestrator.plugins import PluginRegistry, discover
from orchestrator.project import Project
from orchestrator.protocol import Protocol, ResolvedParams
from orchestrator.protocol.form import resolve_params
from orchestrator.store import ProjectStore, RunRecord, RunState

#: the form fields that are not params (a param name is an identifier: it cannot be one of these)
NAME_FIELD = "run:name"
HOST_FIELD = "run:host"
_PROBLEM = re.compile(r"^param '(?P<param>[^']+)': (?P<problem>.*)$", re.DOTALL)
#: runs whose outputs a new run may already name: finished ones, and those that will be (the
#: scheduler starts the new run when they finish)
POINTABLE_STATES = (RunState.FINISHED, RunState.RUNNING, RunState.QUEUED)


@dataclass(frozen=True)
class PointerChoice:
    """An output a pointer param may name: ``value`` is what the field holds (``RUN.OUTPUT``)."""

    value: str
    run_id: int
    run_name: str
    output: str
    type_name: str
    run_state: str
    protocol: str
    #: how many items a set holds (None: not a set, or not produced yet)
    size: int | None = None

    @property
    def ready(self) -> bool:
        """Produced already (the run finished): a wizard can look at it."""
        return self.run_state == RunState.FINISHED.value


@dataclass(frozen=True)
class RunCopy:
    """An earlier run as the start of a new one: its params as form text, and its host."""

    run_id: int
    run_name: str
    protocol: str
    host: str
    fields: dict[str, str]


class FormRejected(UsageError):
    """The form's values were refused: ``by_param`` maps a param (or :data:`NAME_FIELD`,
    :data:`HOST_FIELD`) to its problems, without the ``param 'NAME':`` prefix; ``general``
    holds the problems of no one field. Nothing was created."""

    def __init__(self, protocol: str, by_param: dict[str, list[str]] | None = None,
                 general: list[str] | None = None) -> None:
        self.protocol = protocol
        self.by_param: dict[str, list[str]] = dict(by_param or {})
        self.general: list[str] = list(general or [])
        super().__init__(self._message())

    def add(self, field_name: str, problem: str) -> None:
        self.by_param.setdefault(field_name, []).append(problem)
        self.args = (self._message(),)

    def file(self, problems: Iterable[str]) -> None:
        """File each ``param 'NAME': ...`` message under NAME, the others under ``general``."""
        for problem in problems:
            match = _PROBLEM.match(problem)
            if match:
                self.by_param.setdefault(match["param"], []).append(match["problem"])
            else:
                self.general.append(problem)
        self.args = (self._message(),)

    @property
    def count(self) -> int:
        return sum(len(problems) for problems in self.by_param.values()) + len(self.general)

    def _message(self) -> str:
        lines = [f"{name}: {problem}" for name, problems in self.by_param.items() for problem in problems]
        listed = "\n".join(f"  - {line}" for line in [*lines, *self.general])
        return f"invalid form for protocol '{self.protocol}' ({len(lines) + len(self.general)} problem(s)):\n{listed}"


def protocol_catalog(registry: PluginRegistry | None = None) -> list[PluginDetail]:
    """Every loaded plugin with its protocols' forms (plugins that failed to load come without
    protocols, their ``plugin.error`` saying why)."""
    registry = registry or discover()
    return [show_plugin(info.name, registry) for info in list_plugins(registry)]


def value_text(value: Any) -> str:
    """A param's JSON value as a form field holds it (what a user would type on a command line)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def default_fields(described: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The fields of a fresh form: each param's default as text (empty where it has none)."""
    return {param["name"]: value_text(param["default"]) for param in described}


def copy_of_run(target: ProjectTarget, run_ref: int | str, protocol: str, *,
                registry: PluginRegistry | None = None) -> RunCopy:
    """The fields of run ``run_ref`` for a new run of ``protocol``; a UsageError when that run is of
    another protocol. Pointers are written with the run's name (``ctffind.micrographs``) where
    that run still exists, as the form's choices are."""
    pointers = {param.name for param in (registry or discover()).protocol(protocol).input_params()}
    with project_store(target) as (_project, store):
        run = store.runs.get(run_ref)
        if run.protocol != protocol:
            raise UsageError(f"run {run.name} is a {run.protocol} run: it cannot be copied as a {protocol} run")
        fields = {name: value_text(value) for name, value in run.params.items()}
        for name in pointers & fields.keys():
            fields[name] = _named_pointer(store, fields[name])
    return RunCopy(run.id, run.name, run.protocol, run.host, fields)


def _named_pointer(store: ProjectStore, text: str) -> str:
    if not text:
        return text
    try:
        pointer = Pointer.parse(text)
    except ValueError:
        return text  # as it was stored: the check names what is wrong with it
    try:
        return f"{store.runs.get(pointer.run).name}.{pointer.output}"
    except NotFoundError:
        return text  # the run is gone: the form shows the pointer as it was, and says so at the check


def pointer_choices(target: ProjectTarget, type_name: str, *, ready_only: bool = False,
                    registry: PluginRegistry | None = None) -> list[PointerChoice]:
    """The outputs of type ``type_name`` that a new run may read, newest run first: those finished
    runs registered, and (unless ``ready_only``) those that queued or running runs will register,
    as their protocols declare them."""
    registry = registry or discover()
    choices: list[PointerChoice] = []
    with project_store(target) as (_project, store):
        registered = store.outputs.names_by_run()
        for run in reversed(store.runs.list(POINTABLE_STATES)):
            if run.run_state is RunState.FINISHED:
                if any(kind == type_name for _name, kind in registered.get(run.id, ())):
                    choices.extend(_registered(store, run, type_name))
            elif not ready_only:
                choices.extend(_declared(registry, run, type_name))
    return choices


def _registered(store: ProjectStore, run: RunRecord, type_name: str) -> Iterable[PointerChoice]:
    for output in store.outputs.list(run.id):
        if output.type_name == type_name:
            value = output.value if isinstance(output.value, Mapping) else {}
            size = value.get("size")
            yield PointerChoice(f"{run.name}.{output.name}", run.id, run.name, output.name, type_name, run.state,
                                run.protocol, int(size) if isinstance(size, int) else None)


def _declared(registry: PluginRegistry, run: RunRecord, type_name: str) -> Iterable[PointerChoice]:
    try:
        outputs = registry.protocol(run.protocol).outputs
    except NotFoundError:  # its plugin is not installed here: nothing known of its outputs
        return
    for name, kind in outputs.items():
        if kind == type_name:
            yield PointerChoice(f"{run.name}.{name}", run.id, run.name, name, type_name, run.state, run.protocol)


def form_params(protocol: str, fields: Mapping[str, str], registry: PluginRegistry | None = None) -> dict[str, str]:
    """The params a form gives: its fields that are declared params, empty ones left out (so the
    default applies, or the param is missing when it has none: the check says so)."""
    declared = {param.name for param in (registry or discover()).protocol(protocol).params}
    return {name: text for name, text in fields.items() if name in declared and text.strip() != ""}


def check_form(target: ProjectTarget, protocol: str, fields: Mapping[str, str], *,
               registry: PluginRegistry | None = None) -> FormRejected | None:
    """The problems ``orch run`` would find with these fields, without creating anything (None: none
    found): the protocol's validation, the run's name, that each pointer names an output of the
    right type, and, once all that holds, that the run's steps fit its host (as ``orch run`` checks
    them: :func:`~orchestrator.scheduler.submit_fit.check_run_fits`)."""
    registry = registry or discover()
    declared = registry.protocol(protocol)
    rejected = FormRejected(protocol)
    name = (fields.get(NAME_FIELD) or "").strip()
    raw, base_dir = form_params(protocol, fields, registry), load_project(target).path
    try:
        params = declared.validate(raw, base_dir=base_dir)
    except ParamValidationError as exc:
        rejected.file(exc.problems)
        # the values that did coerce, to check the pointers among them too: one look shows every problem
        params, _problems = resolve_params(declared.name, list(declared.params), raw, base_dir=base_dir)
    with project_store(target) as (project, store):
        if name:
            problem = name_problem(name, is_run=True)
            if problem is not None:
                problem = f"{problem}; {RULE}"
            elif _run_exists(store, name):
                problem = f"a run named {name!r} already exists in this project"
            if problem is not None:
                rejected.add(NAME_FIELD, problem)
        by_name = {param.name: param for param in declared.params}
        for param_name, pointer in params.pointers().items():
            problem = None if param_name in rejected.by_param else _pointer_problem(
                store, registry, pointer, by_name[param_name])
            if problem is not None:
                rejected.add(param_name, problem)
        if not rejected.count:
            _check_host(store, project, declared, params, fields.get(HOST_FIELD) or LOCAL_HOST, rejected)
    return rejected if rejected.count else None


def _check_host(store: ProjectStore, project: Project, protocol: type[Protocol], params: ResolvedParams,
                host_name: str, rejected: FormRejected) -> None:
    """File under the host field why the run cannot go to ``host_name`` (unknown, or a step too big)."""
    from orchestrator.hosts.config.loader import load_hosts
    from orchestrator.scheduler.submit_fit import check_run_fits

    try:
        check_run_fits(store, project, protocol, params, load_hosts(project.path).get(host_name))
    except HostError as exc:
        rejected.add(HOST_FIELD, str(exc))
    except UsageError as exc:  # the protocol's steps cannot be built from these params
        rejected.file([str(exc)])


def _run_exists(store: ProjectStore, name: str) -> bool:
    try:
        store.runs.get(name)
    except NotFoundError:
        return False
    return True


def _pointer_problem(store: ProjectStore, registry: PluginRegistry, pointer: Pointer,
                     param: Any) -> str | None:
    """Why ``pointer`` cannot feed ``param``: no such run, no such output, the wrong type."""
    try:
        producer = store.runs.get(pointer.run)
    except NotFoundError as exc:
        return str(exc)
    try:
        declared = registry.protocol(producer.protocol).outputs
    except NotFoundError:
        return None  # its plugin is not here: the scheduler decides when the run starts
    if pointer.output not in declared:
        return (f"run {producer.name} ({producer.protocol}) has no output '{pointer.output}'; it declares: "
                f"{', '.join(declared) or 'none'}")
    if isinstance(param, PointerParam) and declared[pointer.output] != param.type_name:
        return f"{pointer} is a {declared[pointer.output]}, expected a {param.type_name}"
    if producer.run_state in (RunState.FAILED, RunState.CANCELLED):
        return f"run {producer.name} is {producer.state}: its outputs will never be made; restart it first"
    return None


def submit_form(target: ProjectTarget, protocol: str, fields: Mapping[str, str], *, start_scheduler: bool = True,
                registry: PluginRegistry | None = None) -> RunInfo:
    """Create and queue a run from a form's fields (:data:`NAME_FIELD` and :data:`HOST_FIELD` name
    it and say where it runs) through :func:`~orchestrator.app.runs.submit_run`, the call behind
    ``orch run``; FormRejected lists every problem by field, and nothing is created then."""
    registry = registry or discover()
    rejected = check_form(target, protocol, fields, registry=registry)
    if rejected is not None:
        raise rejected
    name = (fields.get(NAME_FIELD) or "").strip() or None
    host = (fields.get(HOST_FIELD) or "").strip() or None
    try:
        return submit_run(target, protocol, form_params(protocol, fields, registry), name=name, host=host,
                          start_scheduler=start_scheduler, registry=registry)
    except ParamValidationError as exc:  # a protocol's own check_params, or a pointer's type
        rejected = FormRejected(protocol)
        rejected.file(exc.problems)
        raise rejected from None
    except HostError as exc:  # an unknown host, or a step bigger than the host can give
        raise FormRejected(protocol, {HOST_FIELD: [str(exc)]}) from None
    except UsageError as exc:
        rejected = FormRejected(protocol)
        rejected.file([str(exc)])
        raise rejected from None


__all__ = ["HOST_FIELD", "NAME_FIELD", "FormRejected", "PointerChoice", "RunCopy",
           "check_form", "copy_of_run", "default_fields", "form_params", "pointer_choices", "protocol_catalog",
           "submit_form", "value_text"]
