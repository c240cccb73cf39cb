"""Turning step results into a run's typed outputs.

A protocol declares its outputs (``outputs = {"files": "Files"}``); a step announces one
by returning it under the reserved result key ``"outputs"``::

    return {"outputs": {"files": {"path": "out", "value": {"files": ["out/a.bin"]}}}}

``path`` is relative to the run directory, ``value`` is any JSON. When the run's steps
have all finished, the scheduler calls ``Protocol.collect_outputs(params, results)`` and
registers the returned :class:`OutputValue` objects in the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.protocol.errors import OutputError

OUTPUTS_KEY = "outputs"


@dataclass(frozen=True)
class OutputValue:
    """One output of a run, ready to register: ``name`` and ``type_name`` as declared."""

    name: str
    type_name: str
    path: str | None = None
    value: Any = None


def output_result(path: str | None = None, value: Any = None) -> dict[str, Any]:
    """The dict a step puts under ``result["outputs"][NAME]`` (a helper for step functions)."""
    return {"path": path, "value": value}


def collect_outputs(
    protocol: str,
    declared: Mapping[str, str],
    results: Mapping[str, Mapping[str, Any] | None],
) -> dict[str, OutputValue]:
    """Gather the outputs announced by step results (``step name -> result``).

    Every declared output must be announced exactly once and nothing undeclared may be;
    OutputError names the protocol, step and output otherwise.
    """
    found: dict[str, OutputValue] = {}
    origin: dict[str, str] = {}
    for step, result in results.items():
        announced = (result or {}).get(OUTPUTS_KEY) or {}
        if not isinstance(announced, Mapping):
            raise OutputError(f"protocol '{protocol}', step '{step}': result['outputs'] must be a dict")
        for name, spec in announced.items():
            if name not in declared:
                raise OutputError(
                    f"protocol '{protocol}', step '{step}': output '{name}' is not declared "
                    f"(declared: {', '.join(declared) or 'none'})"
                )
            if name in found:
                raise OutputError(
                    f"protocol '{protocol}': output '{name}' announced by both "
                    f"step '{origin[name]}' and step '{step}'"
                )
            if not isinstance(spec, Mapping) or set(spec) - {"path", "value"}:
                raise OutputError(
                    f"protocol '{protocol}', step '{step}': output '{name}' must be "
                    "{'path': ..., 'value': ...}"
                )
            found[name] = OutputValue(name, declared[name], spec.get("path"), spec.get("value"))
            origin[name] = step
    missing = [name for name in declared if name not in found]
    if missing:
        raise OutputError(f"protocol '{protocol}': no step announced output(s) {', '.join(missing)}")
    return found
