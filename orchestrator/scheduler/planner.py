"""From a protocol and params to a run, and from a run to the steps that still have to run.

``create_run`` validates params, resolves pointers to the runs they name and records the
provenance links. ``plan_run`` builds the run's step graph and reconciles it with the steps
the store already has for that run: a step is kept (not run again) only when it finished,
its function, arguments and input files are unchanged (same hash), its outputs still exist
and none of the steps it depends on is re-run; everything else, and everything downstream
of it, goes back to PENDING. That is the "re-run what changed and all that depends on it"
rule Scipion misses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import UsageError
from orchestrator.names import LOCAL_HOST
from orchestrator.plugins import PluginRegistry
from orchestrator.project import Project
from orchestrator.protocol import OutputRef, Protocol, ResolvedParams, Step, StepGraph, fingerprint_path, step_hash
from orchestrator.store import InputLink, ProjectStore, RunRecord, RunState, StepRecord, StepState


class InputsNotReady(Exception):
    """A producer run has not finished yet (the run waits)."""


class InputsFailed(Exception):
    """A producer run failed or was cancelled (the run cannot start)."""


def create_run(store: ProjectStore, project: Project, registry: PluginRegistry, protocol_name: str,
               raw_params: Mapping[str, Any], *, name: str | None = None, host: str = LOCAL_HOST,
               queue: bool = True) -> RunRecord:
    """Validate, save and (by default) queue a run; pointers are checked against the store, and
    the run's steps against its host (:func:`~orchestrator.scheduler.submit_fit.check_run_fits`)."""
    from orchestrator.hosts.config.loader import load_hosts
    from orchestrator.provenance.record import launching_user
    from orchestrator.scheduler.submit_fit import check_run_fits

    protocol = registry.protocol(protocol_name)
    params = protocol.validate(raw_params, base_dir=project.path)
    host_config = load_hosts(project.path).get(host)  # an unknown host is refused now, not when the run starts
    links = []
    for param_name, pointer in params.pointers().items():
        producer = store.runs.get(pointer.run)
        declared = registry.protocol(producer.protocol).outputs
        if pointer.output not in declared:
            raise UsageError(f"param '{param_name}': run {producer.name} ({producer.protocol}) has no output "
                             f"'{pointer.output}'; it declares: {', '.join(declared) or 'none'}")
        links.append(InputLink(param_name, producer.id, pointer.output))
    check_run_fits(store, project, protocol, params, host_config)  # a step too big for the host: refused now
    run = store.runs.create(protocol_name, params.to_json(), name=name, host=host, inputs=links,
                            owner_id=store.add_user(launching_user()))
    project.run_dir(run.name).mkdir(parents=True, exist_ok=True)
    if queue:
        store.lifecycle.queue_run(run.id)
    return store.runs.get(run.id)


def resolve_inputs(store: ProjectStore, project: Project, run: RunRecord) -> dict[str, OutputRef]:
    """OutputRefs for the run's pointer params; raises InputsNotReady / InputsFailed."""
    refs = {}
    for link in store.runs.inputs(run.id):
        producer = store.runs.get(link.producer_run_id)
        state = producer.run_state
        if state in (RunState.FAILED, RunState.CANCELLED):
            raise InputsFailed(f"input '{link.param}' comes from run {producer.name}, which is {state.value}")
        if state is not RunState.FINISHED:
            raise InputsNotReady(producer.name)
        refs[link.param] = output_ref(store, project, producer, link.output_name)
    return refs


def output_ref(store: ProjectStore, project: Project, producer: RunRecord, output_name: str) -> OutputRef:
    """The OutputRef of a finished run's output, as a step reads it."""
    output = store.outputs.get(producer.id, output_name)
    return OutputRef(producer.id, output_name, output.type_name, project.run_dir(producer.name), output.path,
                     output.value if output.value is not None else _set_value(output.set_id))


def _set_value(set_id: int | None) -> Any:
    return {"set_id": set_id} if set_id is not None else None


def bound_params(protocol: type[Protocol], store: ProjectStore, project: Project, run: RunRecord) -> ResolvedParams:
    params = protocol.validate(run.params, base_dir=project.path)
    return params.bind_inputs(resolve_inputs(store, project, run))


def input_paths(step: Step, run_dir: Path) -> list[Path]:
    return [Path(p) if Path(p).is_absolute() else run_dir / p for p in step.inputs]


def current_hash(step: Step, run_dir: Path) -> str | None:
    """The step's hash from its inputs as they are now; None if an input is missing."""
    fingerprints = {}
    for path, original in zip(input_paths(step, run_dir), step.inputs, strict=True):
        if not path.exists():
            return None
        fingerprints[original] = fingerprint_path(path)
    return step_hash(step, fingerprints)


def outputs_exist(step: Step, run_dir: Path) -> bool:
    return all((run_dir / p).exists() for p in step.outputs)


@dataclass
class Plan:
    graph: StepGraph
    step_ids: dict[str, int]
    kept: list[str]
    to_run: list[str]


def plan_run(store: ProjectStore, run: RunRecord, graph: StepGraph, run_dir: Path,
             default_retries: int) -> Plan:
    """Reconcile ``graph`` with the run's stored steps (see the module docstring)."""
    existing: dict[str, StepRecord] = {s.name: s for s in store.steps.list(run.id)}
    dirty: set[str] = set()
    kept: list[str] = []
    reasons: dict[str, str] = {}
    for step in graph.topological_order():
        row = existing.get(step.name)
        reason = _why_rerun(step, row, dirty, run_dir)
        if reason is None:
            kept.append(step.name)
        else:
            dirty.add(step.name)
            reasons[step.name] = reason
    stale = [row.id for name, row in existing.items() if name not in graph.names()]
    store.steps.delete(stale)
    new_rows = []
    resets: dict[int, tuple[dict[str, Any], str]] = {}
    for name in dirty:
        step = graph[name]
        fields = {"func": step.func, "args": step.args, "deps": list(step.deps),
                  "resources": step.resources.to_dict(),
                  "max_retries": default_retries if step.retries is None else step.retries}
        row = existing.get(name)
        if row is None:
            new_rows.append({"name": name, **fields})
        elif row.state != StepState.PENDING.value or row.result is not None:
            resets[row.id] = (fields, reasons[name])
        else:
            store.steps.update(row.id, **fields)
    store.steps.add(run.id, new_rows)
    store.lifecycle.reset_steps(resets)
    step_ids = store.steps.column(run.id, "id")
    return Plan(graph, step_ids, kept, [s.name for s in graph.topological_order() if s.name in dirty])


def _why_rerun(step: Step, row: StepRecord | None, dirty: set[str], run_dir: Path) -> str | None:
    if row is None:
        return "new step"
    if row.state != StepState.FINISHED.value:
        return f"was {row.state}"
    changed_deps = [d for d in step.deps if d in dirty]
    if changed_deps:
        return f"upstream step(s) re-run: {', '.join(changed_deps)}"
    if row.func != step.func or row.args != step.args:
        return "function or arguments changed"
    if not outputs_exist(step, run_dir):
        return "an output file is missing"
    if row.hash is None or row.hash != current_hash(step, run_dir):
        return "code or input files changed"
    return None
