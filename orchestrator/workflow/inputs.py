"""Open params of a workflow: values the file leaves for whoever imports it.

A workflow declares them at the top, and a run's param names one instead of giving a value::

    {"inputs": {"movies": {"label": "Movie files (glob)", "type": "str"},
                "pixel_size": {"label": "Pixel size (Å)", "type": "float", "default": 1.06}},
     "runs": [{"name": "import", "protocol": "emtools.import_movies",
               "params": {"files": {"$input": "movies"}, "pixel_size": {"$input": "pixel_size"}}}]}

Exported workflows open the params that would carry this machine into the file (absolute
paths) and those asked for with ``--open``; Scipion templates' ``~label|default|type~`` fields
become open inputs too. Before the runs are created every input gets a value: given
(``--set NAME=VALUE``), asked for, or its default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import UsageError

#: the key of a param value that names an open input instead of giving a value
INPUT_REF = "$input"
INPUT_TYPES = ("str", "int", "float", "bool", "path", "pointer")
INPUT_KEYS = frozenset({"label", "type", "default", "help"})
INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


class InputError(UsageError):
    """An open input is declared badly, referred to but not declared, or given a bad value."""


@dataclass(frozen=True)
class OpenInput:
    """One value a workflow leaves open; ``has_default`` tells a default of None from none."""

    name: str
    type: str = "str"
    label: str = ""
    help: str = ""
    default: Any = None
    has_default: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"label": self.label or self.name, "type": self.type}
        if self.help:
            data["help"] = self.help
        if self.has_default:
            data["default"] = self.default
        return data

    def coerce(self, value: Any) -> Any:
        """A value for this input (a CLI string or a JSON value) in its type; InputError if it
        does not fit."""
        try:
            return _COERCE[self.type](value)
        except (TypeError, ValueError):
            raise InputError(f"input {self.name!r} ({self.label or self.type}): expected {_EXPECTED[self.type]}, "
                             f"got {value!r}") from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(value)


def _int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value.strip()) if isinstance(value, str) else int(value)


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value.strip()) if isinstance(value, str) else float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(value)
    return number


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(value)
    return value.strip()


_COERCE: dict[str, Callable[[Any], Any]] = {"str": _text, "path": _text, "pointer": _text, "int": _int,
                                            "float": _float, "bool": _bool}
_EXPECTED = {"str": "a non-empty text", "path": "a path", "pointer": "RUN.OUTPUT (e.g. extract.particles)",
             "int": "a whole number", "float": "a number", "bool": "true or false"}


def parse_inputs(document: Mapping[str, Any], where: str) -> dict[str, OpenInput]:
    """The ``inputs`` of a decoded workflow document (none when it has no such key)."""
    declared = document.get("inputs", {})
    if not isinstance(declared, dict):
        raise InputError(f'{where}: "inputs" must be an object of input name -> {{"label", "type", "default"}}')
    inputs: dict[str, OpenInput] = {}
    for name, entry in declared.items():
        at = f"{where}: input {name!r}"
        if not INPUT_NAME.match(name):
            raise InputError(f"{at}: an input name is a letter or _ then letters, digits, '_', '.' or '-'")
        if not isinstance(entry, dict):
            raise InputError(f'{at}: expected an object like {{"label": "Pixel size (Å)", "type": "float"}}')
        unknown = sorted(set(entry) - INPUT_KEYS)
        if unknown:
            raise InputError(f"{at}: unknown key(s) {', '.join(unknown)}; "
                             f"an input has: {', '.join(sorted(INPUT_KEYS))}")
        kind = entry.get("type", "str")
        if kind not in INPUT_TYPES:
            raise InputError(f"{at}: type {kind!r} is not one of {', '.join(INPUT_TYPES)}")
        for key in ("label", "help"):
            if not isinstance(entry.get(key, ""), str):
                raise InputError(f'{at}: "{key}" must be a text')
        open_input = OpenInput(name, kind, entry.get("label", ""), entry.get("help", ""))
        if "default" in entry:
            default = None if entry["default"] is None else open_input.coerce(entry["default"])
            open_input = OpenInput(name, kind, open_input.label, open_input.help, default, True)
        inputs[name] = open_input
    return inputs


def input_reference(value: Any) -> str | None:
    """The input a param value names (``{"$input": NAME}``), or None for a plain value."""
    if isinstance(value, dict) and INPUT_REF in value:
        name = value[INPUT_REF]
        if len(value) != 1 or not isinstance(name, str):
            raise InputError(f'a param naming an input is written {{"{INPUT_REF}": "NAME"}} and nothing else, '
                             f"got {value!r}")
        return name
    return None


def references(params: Mapping[str, Any]) -> dict[str, str]:
    """param name -> input name, for the params of one run that name an input."""
    found = {}
    for param, value in params.items():
        name = input_reference(value)
        if name is not None:
            found[param] = name
    return found


def fill(params: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with every input reference replaced by its value from ``values``."""
    filled = dict(params)
    for param, name in references(params).items():
        filled[param] = values[name]
    return filled


def resolve_values(inputs: Mapping[str, OpenInput], given: Mapping[str, Any],
                   ask: Callable[[OpenInput], Any] | None = None, where: str = "workflow") -> dict[str, Any]:
    """A value for every input: given, else asked for (when ``ask`` is set), else its default.

    Raises InputError naming every input still without a value and how to give one, and for a
    value given to an input the workflow does not have (a typo would otherwise be ignored)."""
    unknown = sorted(set(given) - set(inputs))
    if unknown:
        have = ", ".join(inputs) or "none"
        raise InputError(f"{where}: no input named {', '.join(map(repr, unknown))}; its inputs: {have}")
    values: dict[str, Any] = {}
    missing: list[OpenInput] = []
    for name, open_input in inputs.items():
        if name in given:
            values[name] = open_input.coerce(given[name])
        elif ask is not None:
            values[name] = open_input.coerce(ask(open_input))
        elif open_input.has_default:
            values[name] = open_input.default
        else:
            missing.append(open_input)
    if missing:
        wanted = "; ".join(f"{item.name} ({item.label or item.type}, {item.type})" for item in missing)
        example = " ".join(f"--set {item.name}=..." for item in missing[:2])
        raise InputError(f"{where}: the workflow leaves these inputs open: {wanted}. Give them: {example}")
    return values


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["pixel_size=1.06"]`` -> ``{"pixel_size": "1.06"}`` (``--set`` on the command line)."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--set {item!r}: expected NAME=VALUE (e.g. --set pixel_size=1.06)")
        values[name.strip()] = value
    return values
