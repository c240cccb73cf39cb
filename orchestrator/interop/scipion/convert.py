"""Scipion workflow (or template) -> our workflow document, version 2.

``convert_scipion_workflow`` reads the protocols of a Scipion export (:mod:`.document`),
decides for each whether it becomes a run (:mod:`.mapping`: an equivalent protocol that is
installed, and settings it supports), makes the runs' params (:mod:`.runs`), puts the runs
in dependency order and reports the rest:

- a protocol with no equivalent is *omitted*, with its reason; it never fails the import.
  The runs that took an input from it keep that input open (an input of type ``pointer``)
  so that the user can point it at a run of their project. We chose that over leaving them
  out too: a Scipion workflow often has one protocol of a plugin we lack in the middle of a
  chain that is otherwise ours, and the user should not lose the rest of the chain. When the
  omitted protocol only passed along data from a run of the file (a filter), that run's
  output is the open input's default.
- a protocol that only gives settings to another (a mask for post-processing, a volume
  import that names the reference map) is *folded* into the runs that use it and reported
  as omitted with the names of those runs.
- every param converted with a change of unit or meaning, every Scipion setting left
  behind and every input left open is a line of ``notes``.

Errors (not a Scipion file, a protocol without a class name or id, a bad pointer, a bad
template field, pointers in a cycle) raise :class:`WorkflowError` naming the file and the
protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import NotFoundError
from orchestrator.interop.scipion.document import ScipionProtocol, parse_protocols
from orchestrator.interop.scipion.mapping import MAPPINGS, NO_EQUIVALENT
from orchestrator.interop.scipion.naming import run_name
from orchestrator.interop.scipion.runs import ConversionState, RunMaker
from orchestrator.interop.scipion.units import ConversionProblem
from orchestrator.plugins import PluginRegistry
from orchestrator.workflow import WorkflowError

WORKFLOW_FORMAT = {"name": "em-orchestrator/workflow", "version": 2}
DEFAULT_REASON = "no equivalent protocol"


@dataclass(frozen=True)
class OmittedProtocol:
    """A Scipion protocol that did not become a run, and why.

    ``left_open``: the inputs of the workflow that pointed to it and are now left for the user.
    """

    scipion_id: str
    label: str
    class_name: str
    reason: str
    left_open: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScipionConversion:
    """A converted workflow: the document (our format, v2), what was left out, and the notes."""

    workflow: dict[str, Any]
    omitted: list[OmittedProtocol]
    notes: list[str]


def convert_scipion_workflow(document: Any, source: Path, registry: PluginRegistry, *,
                             description: str = "") -> ScipionConversion:
    """Convert a decoded Scipion workflow or template ``document`` read from ``source``.

    ``description``: a template's description lines (see ``load_scipion_file``). Only the
    file name of ``source`` goes into the result; the whole path names it in errors.
    """
    source = Path(source)
    protocols = parse_protocols(document, source)
    by_id = {protocol.id: protocol for protocol in protocols}
    kept, reasons, notes = _decide(protocols, registry)
    if not kept:
        listed = "; ".join(f"{p.where}: {reasons[p.id]}" for p in protocols[:5])
        more = f"; and {len(protocols) - 5} more" if len(protocols) > 5 else ""
        raise WorkflowError(f"{source}: none of the {len(protocols)} Scipion protocols of the file has an "
                            f"equivalent here, so there is nothing to import: {listed}{more}")
    taken: set[str] = set()
    names = {p.id: run_name(p.label, p.class_name, taken) for p in protocols if p.id in kept}
    state = ConversionState(source, registry, by_id, kept, names, notes=notes)
    runs = {p.id: RunMaker(state, p).make() for p in protocols if p.id in kept}
    order = _dependency_order([p for p in protocols if p.id in kept], state.deps, source)
    omitted = [_omitted(p, reasons[p.id], state) for p in protocols if p.id not in kept]
    workflow: dict[str, Any] = {
        "format": dict(WORKFLOW_FORMAT),
        "description": description or f"Imported from the Scipion workflow {source.name} "
                                      f"({len(runs)} of {len(protocols)} protocols)",
        "inputs": state.inputs.specs,
        "runs": [runs[p.id] for p in order],
        "source": {"kind": "scipion", "file": source.name,
                   "runs": {names[p.id]: {"id": p.id, "class": p.class_name, "label": p.label} for p in order},
                   "omitted": [o.scipion_id for o in omitted]},
    }
    return ScipionConversion(workflow, omitted, state.notes)


def _decide(protocols: list[ScipionProtocol], registry: PluginRegistry) -> tuple[dict[str, Any], dict[str, str],
                                                                                   list[str]]:
    """Which protocols become runs (id -> map) and why the others do not (id -> reason)."""
    kept, reasons, notes = {}, {}, []
    for protocol in protocols:
        entry = MAPPINGS.get(protocol.class_name)
        if entry is None:
            reasons[protocol.id] = NO_EQUIVALENT.get(protocol.class_name, DEFAULT_REASON)
            continue
        try:
            registry.protocol(entry.protocol)
        except NotFoundError:
            reasons[protocol.id] = f"its equivalent {entry.protocol} is not installed (plugin " \
                                   f"'{entry.protocol.split('.')[0]}')"
            continue
        try:
            refusal = entry.refuse(protocol.values) if entry.refuse is not None else None
        except (ConversionProblem, TypeError, ArithmeticError) as exc:
            notes.append(f"{protocol.where}: cannot read a setting ({exc}); converted as if it were the default")
            refusal = None
        if refusal is not None:
            reasons[protocol.id] = refusal
        else:
            kept[protocol.id] = entry
    return kept, reasons, notes


def _omitted(protocol: ScipionProtocol, reason: str, state: ConversionState) -> OmittedProtocol:
    consumers = list(dict.fromkeys(state.folded_into.get(protocol.id, [])))
    if consumers:
        reason = f"{reason}; its settings were carried into run(s) {', '.join(consumers)}"
    return OmittedProtocol(protocol.id, protocol.label, protocol.class_name, reason,
                           tuple(state.left_open.get(protocol.id, [])))


def _dependency_order(kept: list[ScipionProtocol], deps: dict[str, set[str]], source: Path) -> list[ScipionProtocol]:
    """The kept protocols, each after the ones it depends on, otherwise in file order."""
    remaining = {p.id: set(deps.get(p.id, set())) & {q.id for q in kept} for p in kept}
    order: list[ScipionProtocol] = []
    while remaining:
        ready = [p for p in kept if p.id in remaining and not remaining[p.id]]
        if not ready:
            stuck = ", ".join(p.where for p in kept if p.id in remaining)
            raise WorkflowError(f"{source}: these protocols take their inputs from each other in a cycle: {stuck}")
        first = ready[0]
        order.append(first)
        del remaining[first.id]
        for waiting in remaining.values():
            waiting.discard(first.id)
    return order
