"""A protocol's form as a whole: checking the declaration once, validating a run's params.

The per-value work (coercion, bounds, choices) belongs to the param declarations; this
module adds what needs all of them: unknown names with a "did you mean", defaults,
conditions (a param whose condition is false is ignored and not validated) and collecting
every problem into one :class:`ParamValidationError`.

Conditions may only refer to params declared *before* them, as a form reads top to
bottom; that keeps evaluation a single pass with no fixed point to find.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.objects.params import (
    Param,
    ParamValidationError,
    ParamValueError,
    suggest,
)
from orchestrator.protocol.conditions import (
    UnresolvedCondition,
    condition_names,
    evaluate_condition,
)
from orchestrator.protocol.errors import ProtocolDefinitionError
from orchestrator.protocol.resolved import ResolvedParams

PROTOCOL_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_\-]+)*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_PARAM_NAMES = frozenset(name for name in dir(ResolvedParams) if not name.startswith("_"))


def check_declaration(
    name: str, params: Sequence[Param], outputs: Mapping[str, str], citations: Sequence[str]
) -> None:
    """Raise ProtocolDefinitionError for a malformed protocol declaration (a plugin bug)."""
    where = f"protocol {name!r}"
    if not isinstance(name, str) or not PROTOCOL_NAME.match(name):
        raise ProtocolDefinitionError(f"{where}: name must look like 'plugin.protocol'")
    if not isinstance(params, list | tuple) or not isinstance(outputs, Mapping):
        raise ProtocolDefinitionError(f"{where}: params must be a list and outputs a dict")
    seen: set[str] = set()
    for param in params:
        if not isinstance(param, Param):
            raise ProtocolDefinitionError(f"{where}: params holds {param!r}, which is not a Param")
        if param.name in seen:
            raise ProtocolDefinitionError(f"{where}: param '{param.name}' is declared twice")
        if param.name in RESERVED_PARAM_NAMES:
            raise ProtocolDefinitionError(f"{where}: param name '{param.name}' is reserved")
        if param.condition is not None and not (
            isinstance(param.condition, str) or callable(param.condition)
        ):
            raise ProtocolDefinitionError(
                f"{where}: condition of param '{param.name}' must be a str or callable"
            )
        try:
            later = condition_names(param.condition) if param.condition is not None else frozenset()
        except ProtocolDefinitionError as exc:
            raise ProtocolDefinitionError(f"{where}, param '{param.name}': {exc}") from None
        unknown = sorted(later - seen)
        if unknown:
            raise ProtocolDefinitionError(
                f"{where}: condition of param '{param.name}' refers to {unknown}, "
                "which are not params declared before it"
            )
        seen.add(param.name)
    for output, type_name in outputs.items():
        if not _IDENTIFIER.match(output) or not isinstance(type_name, str) or not type_name:
            raise ProtocolDefinitionError(
                f"{where}: outputs must map identifiers to type names, got {output!r}"
            )
    if isinstance(citations, str) or not all(isinstance(c, str) for c in citations):
        raise ProtocolDefinitionError(f"{where}: citations must be a list of BibTeX strings")


def resolve_params(
    protocol: str,
    declared: Sequence[Param],
    raw: Mapping[str, Any],
    *,
    base_dir: Path | None = None,
) -> tuple[ResolvedParams, list[str]]:
    """Apply defaults, conditions, coercion and checks; return the params and all problems.

    Values may be CLI strings or typed/JSON values (so stored params validate again).
    A param whose condition cannot be decided because a param it refers to is invalid is
    not reported itself: the user fixes the first error, then sees the rest.
    """
    by_name = {param.name: param for param in declared}
    problems = [
        f"param '{key}': no such param in protocol '{protocol}'{suggest(key, list(by_name))}"
        for key in raw
        if key not in by_name
    ]
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    inactive: set[str] = set()
    undecided: set[str] = set()
    for param in declared:
        known = {name: value for name, value in values.items() if name not in errors}
        try:
            active = evaluate_condition(param.condition, known)
        except UnresolvedCondition as exc:
            if not errors:  # nothing invalid before it: the condition reads an undeclared name
                raise ProtocolDefinitionError(
                    f"protocol '{protocol}': condition of param '{param.name}' reads {exc}, "
                    "which is not a param declared before it"
                ) from None
            active, undecided = True, undecided | {param.name}
        if not active:
            inactive.add(param.name)
            values[param.name] = param.default
            continue
        try:
            values[param.name] = param.coerce(raw[param.name]) if param.name in raw else param.default
        except ParamValueError as exc:
            values[param.name] = param.default
            errors[param.name] = str(exc)
    for param in declared:
        name = param.name
        if name in inactive or name in undecided:
            continue
        if name in errors:
            problems.append(errors[name])
        elif values[name] is None and param.required:
            problems.append(f"param '{name}': a value is required ({param.label}: {param.kind})")
        else:
            problems.extend(param.check(values[name], base_dir=base_dir))
    ignored = frozenset(name for name in raw if name in inactive)
    resolved = ResolvedParams(protocol, declared, values, frozenset(inactive), ignored)
    return resolved, problems


def raise_problems(protocol: str, problems: Sequence[str]) -> None:
    """Raise one ParamValidationError listing every problem, if there is any."""
    if problems:
        raise ParamValidationError(protocol, problems)


def describe_params(params: Sequence[Param]) -> list[dict[str, Any]]:
    """The declared params as JSON-ready data (for ``orch plugins show`` and the web form)."""
    return [param.describe() for param in params]


__all__ = [
    "PROTOCOL_NAME",
    "RESERVED_PARAM_NAMES",
    "check_declaration",
    "describe_params",
    "raise_problems",
    "resolve_params",
]
