"""The protocol API: what plugins implement and what the scheduler consumes.

Plugins write :class:`Protocol` subclasses (params, outputs, ``steps``) and module-level
step functions ``def f(ctx: StepContext, **args) -> dict | None``. The scheduler uses:

- ``P.validate(raw) -> ResolvedParams``, ``params.pointers()``, ``params.bind_inputs(refs)``
- ``P().build_steps(params) -> StepGraph``; ``graph.topological_order()``, ``graph.downstream_of(name)``
- ``step_hash(step, fingerprints)``, ``fingerprint_path(path)`` to skip unchanged steps
- ``execute_step(step.func, ctx, step.args)`` in the worker
- ``ctx.pending_sets`` (:class:`PendingSet`) and ``substitute_set_ids(result, ids)`` when it
  records a step's end; ``SetSource`` / ``SetReader``: what ``ctx.open_set`` reads from
- ``P().collect_outputs(params, results) -> {name: OutputValue}``

Everything is importable from here; the sub-modules each hold one concern.
"""

from orchestrator.objects.params import (
    BoolParam,
    EnumParam,
    FloatParam,
    IntParam,
    Param,
    PathParam,
    Pointer,
    PointerParam,
    StrParam,
)
from orchestrator.protocol.base import Protocol
from orchestrator.protocol.context import StepContext, StepContextError, execute_step
from orchestrator.protocol.errors import (
    FingerprintError,
    OutputError,
    ParamDefinitionError,
    ParamValidationError,
    ParamValueError,
    ProtocolDefinitionError,
    ProtocolError,
    StepDefinitionError,
    StepFunctionError,
    StepGraphError,
    StepResultError,
)
from orchestrator.protocol.graph import StepGraph
from orchestrator.protocol.hashing import (
    canonical_json,
    fingerprint_file,
    fingerprint_path,
    function_source,
    step_hash,
)
from orchestrator.protocol.outputs import OUTPUTS_KEY, OutputValue, output_result
from orchestrator.protocol.resolved import OutputRef, ResolvedParams
from orchestrator.protocol.sets import (
    SET_PLACEHOLDER,
    PendingSet,
    SetDataError,
    SetReader,
    SetSource,
    set_placeholders,
    substitute_set_ids,
)
from orchestrator.protocol.steps import Resources, Step, function_path, load_function

StepSpec = Step  # the name used in early design notes

__all__ = [
    "OUTPUTS_KEY",
    "SET_PLACEHOLDER",
    "BoolParam",
    "EnumParam",
    "FingerprintError",
    "FloatParam",
    "IntParam",
    "OutputError",
    "OutputRef",
    "OutputValue",
    "Param",
    "ParamDefinitionError",
    "ParamValidationError",
    "ParamValueError",
    "PathParam",
    "PendingSet",
    "Pointer",
    "PointerParam",
    "Protocol",
    "ProtocolDefinitionError",
    "ProtocolError",
    "ResolvedParams",
    "Resources",
    "SetDataError",
    "SetReader",
    "SetSource",
    "Step",
    "StepContext",
    "StepContextError",
    "StepDefinitionError",
    "StepFunctionError",
    "StepGraph",
    "StepGraphError",
    "StepResultError",
    "StepSpec",
    "StrParam",
    "canonical_json",
    "execute_step",
    "fingerprint_file",
    "fingerprint_path",
    "function_path",
    "function_source",
    "load_function",
    "output_result",
    "set_placeholders",
    "step_hash",
    "substitute_set_ids",
]
