"""A project's runs written as a workflow document (format version 2), ready to import elsewhere.

What goes in: each run's protocol, every param as the run stored it (defaults included, so a
later plugin version with other defaults computes the same thing), its host, and the links
between runs as ``RUN.OUTPUT`` pointers by name. What stays out: absolute paths, user names,
the project's location and anything else that belongs to this machine. A param that would
carry one (a path to the raw data) becomes an open input, asked for on import; so does a
pointer to a run that is not exported, and every param named with ``open_params``.

:func:`exported_workflow` also returns the values the open inputs had here, so a replay can
fill them with the original inputs (:mod:`orchestrator.replay`).
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.errors import NotFoundError, UsageError
from orchestrator.names import LOCAL_HOST
from orchestrator.objects.params import Param
from orchestrator.plugins import PluginRegistry
from orchestrator.project import Project
from orchestrator.store import ProjectStore, RunRecord
from orchestrator.workflow.document import FORMAT_NAME, FORMAT_VERSION
from orchestrator.workflow.inputs import INPUT_REF, OpenInput

#: param kinds whose values are names of things on this machine
_PATH_KINDS = ("path",)


@dataclass(frozen=True)
class ExportedWorkflow:
    """The document, and what each open input was in the project it came from (absolute paths)."""

    document: dict[str, Any]
    original_values: dict[str, Any]
    run_names: list[str]


def export_workflow(store: ProjectStore, project: Project, registry: PluginRegistry,
                    runs: Sequence[int | str] | None = None, open_params: Iterable[str] = ()) -> dict[str, Any]:
    """The runs ``runs`` (default: every run of the project) as a workflow document."""
    return exported_workflow(store, project, registry, runs, open_params).document


def exported_workflow(store: ProjectStore, project: Project, registry: PluginRegistry,
                      runs: Sequence[int | str] | None = None, open_params: Iterable[str] = (),
                      with_ancestors: bool = False) -> ExportedWorkflow:
    """The document of :func:`export_workflow` with the open inputs' original values.

    ``with_ancestors`` adds the runs the chosen ones depend on (a replay needs them)."""
    chosen = _chosen_runs(store, runs, with_ancestors)
    names = {run.id: run.name for run in store.runs.list()}
    wanted_open = _parse_open(open_params, chosen)
    inputs: dict[str, OpenInput] = {}
    originals: dict[str, Any] = {}
    entries = []
    exported_ids = {run.id for run in chosen}
    plugins: dict[str, str] = {}
    for run in _in_dependency_order(store, chosen):
        protocol = registry.protocol(run.protocol)
        plugin = registry.plugin_of(run.protocol)
        plugins[plugin.name] = plugin.version
        declared = {param.name: param for param in protocol.params}
        links = {link.param: link for link in store.runs.inputs(run.id)}
        params: dict[str, Any] = {}
        for name, value in run.params.items():
            link = links.get(name)
            if link is not None:
                value = f"{names[link.producer_run_id]}.{link.output_name}"
                if link.producer_run_id not in exported_ids:
                    params[name] = _open(inputs, originals, run, name, declared.get(name), value, "pointer",
                                         keep_default=True,
                                         why="points to a run that is not exported; name a run of your project")
                    continue
            elif (run.name, name) in wanted_open:
                params[name] = _open(inputs, originals, run, name, declared.get(name), value,
                                     _input_type(declared.get(name), value), keep_default=True)
                continue
            elif _is_local_path(declared.get(name), value, project.path):
                params[name] = _open(inputs, originals, run, name, declared.get(name),
                                     _absolute(value, project.path), _input_type(declared.get(name), value),
                                     keep_default=False, why="a path on the machine it was exported from")
                continue
            params[name] = value
        entry: dict[str, Any] = {"name": run.name, "protocol": run.protocol, "params": params}
        if run.host and run.host != LOCAL_HOST:
            entry["host"] = run.host
        entries.append(entry)
    document: dict[str, Any] = {"format": {"name": FORMAT_NAME, "version": FORMAT_VERSION},
                                "description": f"{len(entries)} run(s) exported from an em-orchestrator project",
                                "inputs": {name: item.to_json() for name, item in inputs.items()},
                                "runs": entries,
                                "source": {"kind": "em-orchestrator", "version": __version__,
                                           "exported_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
                                           "plugins": dict(sorted(plugins.items()))}}
    return ExportedWorkflow(document, originals, [entry["name"] for entry in entries])


def _chosen_runs(store: ProjectStore, refs: Sequence[int | str] | None, with_ancestors: bool) -> list[RunRecord]:
    every = store.runs.list()
    if not refs:
        if not every:
            raise UsageError("the project has no runs to export")
        return every
    chosen: dict[int, RunRecord] = {}
    for ref in refs:
        run = store.runs.get(ref)  # NotFoundError names the run
        chosen[run.id] = run
    if with_ancestors:
        pending = list(chosen)
        while pending:
            for link in store.runs.inputs(pending.pop()):
                if link.producer_run_id not in chosen:
                    chosen[link.producer_run_id] = store.runs.get(link.producer_run_id)
                    pending.append(link.producer_run_id)
    return list(chosen.values())


def _in_dependency_order(store: ProjectStore, runs: list[RunRecord]) -> list[RunRecord]:
    """Producers before consumers; otherwise in creation order (ids)."""
    by_id = {run.id: run for run in runs}
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for run in sorted(runs, key=lambda r: r.id):
        sorter.add(run.id, *(link.producer_run_id for link in store.runs.inputs(run.id)
                             if link.producer_run_id in by_id))
    sorter.prepare()
    ordered: list[int] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        ordered.extend(ready)
        sorter.done(*ready)
    return [by_id[run_id] for run_id in ordered]


def _parse_open(items: Iterable[str], runs: list[RunRecord]) -> set[tuple[str, str]]:
    """``RUN.PARAM`` items -> (run name, param); each must name an exported run's param."""
    params_of = {run.name: run.params for run in runs}
    wanted = set()
    for item in items:
        run_name, sep, param = item.rpartition(".")
        if not sep or not run_name or not param:
            raise UsageError(f"--open {item!r}: expected RUN.PARAM (e.g. import.pixel_size)")
        if run_name not in params_of:
            raise NotFoundError(f"--open {item!r}: no exported run named {run_name!r}")
        if param not in params_of[run_name]:
            raise UsageError(f"--open {item!r}: run {run_name} has no param {param!r}; it has: "
                             f"{', '.join(params_of[run_name])}")
        wanted.add((run_name, param))
    return wanted


def _open(inputs: dict[str, OpenInput], originals: dict[str, Any], run: RunRecord, param: str,
          declaration: Param | None, original: Any, kind: str, *, keep_default: bool, why: str = "") -> dict[str, str]:
    """Declare the open input ``RUN.PARAM`` and return the reference the run's param becomes."""
    name = f"{run.name}.{param}"
    label = declaration.label if declaration is not None else param
    help_text = declaration.help if declaration is not None else ""
    if why:
        help_text = f"{help_text} ({why})" if help_text else why
    has_default = keep_default and original is not None
    inputs[name] = OpenInput(name, kind, f"{label} ({run.name})", help_text, original if has_default else None,
                             has_default)
    originals[name] = original
    return {INPUT_REF: name}


def _input_type(declaration: Param | None, value: Any) -> str:
    kind = declaration.kind if declaration is not None else ""
    if kind in ("int", "float", "bool", "path", "pointer"):
        return kind
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def _is_local_path(declaration: Param | None, value: Any, project_dir: Path) -> bool:
    """Whether a param's value names a place on this machine: any path param with a value, any
    text that is an absolute or home-relative path, and any text naming files of the project
    (an import's glob ``raw/*.mrcs``): the project it is imported into will not have them."""
    if not isinstance(value, str) or not value:
        return False
    if declaration is not None and declaration.kind in _PATH_KINDS:
        return True
    if value.startswith(("/", "~")):
        return True
    try:
        return next(iter(project_dir.glob(value)), None) is not None  # one match is enough
    except (ValueError, NotImplementedError, OSError):  # not a pattern pathlib accepts
        return False


def _absolute(value: str, project_dir: Path) -> str:
    """A path param as it resolved in its project (relative paths are relative to the project)."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else project_dir / path)
