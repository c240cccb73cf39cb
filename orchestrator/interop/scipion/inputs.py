"""The params a converted workflow leaves open: its ``inputs``, asked when it is imported.

They come from template fields (``~Label|default|type~``), from file paths of the Scipion
machine, and from inputs whose producer was left out. One template field used in several
places (Scipion keys fields by label) is one input, asked once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.interop.scipion.naming import input_name
from orchestrator.objects.params import Param, ParamValueError, PathParam

#: our param kinds -> the input types of the workflow format
INPUT_TYPES = {"int": "int", "float": "float", "bool": "bool", "str": "str", "enum": "str", "path": "path",
               "pointer": "pointer"}


@dataclass
class OpenInputs:
    """The inputs of the workflow being made, by name, in the order they were first needed."""

    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _by_key: dict[tuple[Any, ...], str] = field(default_factory=dict)

    def add(self, hint: str, param: Param, label: str, default: Any = None, help_text: str = "",
            key: tuple[Any, ...] | None = None) -> tuple[str, str | None]:
        """An input for ``param`` (named from ``hint``), or the one already made for ``key``.

        Returns its name and, when ``default`` does not suit ``param``, why it was left out.
        """
        kind = INPUT_TYPES.get(param.kind, "str")
        default, problem = _checked_default(param, default)
        full_key = None if key is None else (*key, kind, _hashable(default))
        if full_key is not None and full_key in self._by_key:
            return self._by_key[full_key], problem
        name = input_name(hint, set(self.specs))
        spec: dict[str, Any] = {"label": label, "type": kind}
        if default is not None:
            spec["default"] = default
        if help_text:
            spec["help"] = help_text
        self.specs[name] = spec
        if full_key is not None:
            self._by_key[full_key] = name
        return name, problem


def _checked_default(param: Param, default: Any) -> tuple[Any, str | None]:
    """``default`` as ``param`` reads it (JSON-ready), or None and the reason it does not fit."""
    if default is None or (isinstance(default, str) and not default.strip()):
        return None, None  # an empty text is no default: the workflow format asks for one then
    if param.kind == "pointer":
        return default, None
    try:
        value = param.coerce(default)
    except ParamValueError as exc:
        return None, exc.problem
    if not isinstance(param, PathParam):  # a path's existence is checked where the run is made
        problems = param.check(value)
        if problems:
            return None, problems[0].split(": ", 1)[-1]
    return param.to_json(value), None


def _hashable(value: Any) -> Any:
    return repr(value)
