"""Typed param declarations: the form of a protocol.

A protocol lists its params as plain frozen dataclasses, Scipion-style but without the
reflection layer::

    params = [
        IntParam("box_size", default=256, min=16, label="Box size (px)"),
        EnumParam("mode", choices=("fast", "accurate"), default="fast"),
        FloatParam("sigma", default=2.0, min=0.0, condition="mode == 'accurate'"),
        PointerParam("particles", type_name="SetOfParticles"),
    ]

One declaration answers two questions about one value: ``coerce`` turns what a user typed
(the CLI gives strings: ``box_size=256``, ``flag=true``) or what a workflow JSON holds into
the typed value, and ``check`` tests that typed value (bounds, choices, custom validators).
Both name the param in every message, because the user has to know which one to fix.
Whole-form concerns (unknown names, defaults, conditions between params) live in
:mod:`orchestrator.protocol.form`, which applies these declarations.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NoReturn

from orchestrator.errors import OrchestratorError, UsageError

Validator = Callable[[Any], str | None]
"""A custom check: takes the typed value, returns a problem (without the param name) or None."""

Condition = str | Callable[[Mapping[str, Any]], bool]
"""When a param applies: an expression over earlier params (``"mode == 'accurate'"``) or a
callable given the values of the params declared before it."""

_TRUE = frozenset({"true", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "no", "n", "off", "0"})
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_POINTER = re.compile(r"^(?P<run>\S+)\.(?P<output>[A-Za-z_][A-Za-z0-9_]*)$")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_NUMBER_TEXT = 100  # no int64 or float is written longer; int() of 5,000 digits raises
_SHOWN_CHARS = 60


def _shown(value: Any) -> str:
    """A value as a message quotes it: whole when short, cut (with its length) when hostile-long."""
    try:
        text = repr(value)
    except ValueError:  # repr of an int of more than 4,300 digits
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}... ({len(text)} characters)"


class ParamDefinitionError(OrchestratorError):
    """A param declaration itself is wrong: a bug in the protocol, not in the user's input."""


class ParamValueError(UsageError):
    """One value cannot be read as its param's type; ``param`` and ``problem`` say why."""

    def __init__(self, param: str, problem: str) -> None:
        self.param = param
        self.problem = problem
        super().__init__(f"param '{param}': {problem}")


class ParamValidationError(UsageError):
    """The params given to a protocol are invalid; ``problems`` lists every one of them.

    All problems are reported at once so that a user fixes a command line in one go
    instead of discovering the errors one by one. Each problem starts with ``param 'NAME':``.
    """

    def __init__(self, protocol: str, problems: Sequence[str]) -> None:
        self.protocol = protocol
        self.problems = list(problems)
        listed = "\n".join(f"  - {problem}" for problem in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"invalid params for protocol '{protocol}' ({count} {noun}):\n{listed}")


def suggest(word: str, candidates: Sequence[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True, slots=True)
class Pointer:
    """A reference to another run's output, written ``RUN.OUTPUT``.

    ``run`` is a run id (``12.particles``) or a run name (``motioncorr.micrographs``); a
    run name may itself contain dots, the output name is what follows the last one.
    Resolving it to a real output is the scheduler's job (it knows the project store).
    """

    run: int | str
    output: str

    def __str__(self) -> str:
        return f"{self.run}.{self.output}"

    @classmethod
    def parse(cls, text: str) -> Pointer:
        """Parse ``RUN.OUTPUT``; raise ValueError with the expected form when it does not fit."""
        match = _POINTER.match(text.strip())
        if match is None:
            raise ValueError(f"expected RUN.OUTPUT (e.g. '12.particles'), got {_shown(text)}")
        run = match["run"]
        if not (run.isascii() and run.isdigit()):  # "²" and "١٢" are digits to str.isdigit
            return cls(run, match["output"])
        if len(run) > 18:  # more than any run id (int64); int() of 5,000 digits would raise
            raise ValueError(f"run id {_shown(run)} is too large (in RUN.OUTPUT, got {_shown(text)})")
        return cls(int(run), match["output"])


@dataclass(frozen=True)
class Param:
    """Base of all param declarations. Subclasses set ``kind`` and implement ``_coerce``.

    ``default`` is the typed value used when the user gives none; a param with no default
    is required unless ``optional`` (then its value may be None). ``condition`` makes the
    param apply only sometimes: when it is false the param is ignored (its default is used
    and it is not validated). ``validators`` are extra checks on the typed value.

    Two hints for forms, which change nothing in validation: ``section`` groups the param
    with others under a heading (empty: the form's default group), and ``wizard`` names a
    helper that lets the user choose the value by eye on a sample of the data
    (``"particle_diameter"``, ``"box_size"``, ``"pick_threshold"``, ``"mask_diameter"``,
    ``"lowpass"``: see :mod:`orchestrator.web.wizards`).
    """

    name: str
    _: KW_ONLY
    default: Any = None
    label: str = ""
    help: str = ""
    condition: Condition | None = None
    validators: Sequence[Validator] = ()
    optional: bool = False
    section: str = ""
    wizard: str | None = None

    kind: ClassVar[str] = "any"

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.name):
            raise ParamDefinitionError(f"param name {self.name!r} is not a Python identifier")
        object.__setattr__(self, "validators", tuple(self.validators))
        if not self.label:
            object.__setattr__(self, "label", self.name.replace("_", " ").capitalize())
        if self.default is not None:
            try:
                object.__setattr__(self, "default", self.coerce(self.default))
            except ParamValueError as exc:
                raise ParamDefinitionError(f"bad default for {exc}") from exc

    @property
    def required(self) -> bool:
        """True when the user must give a value (no default and not optional)."""
        return self.default is None and not self.optional

    def coerce(self, value: Any) -> Any:
        """Convert a CLI string or JSON value to this param's type, or raise ParamValueError."""
        if value is None:
            if self.optional:
                return None
            if self.default is not None:
                return self.default
            self._fail(value, "a value")
        return self._coerce(value)

    def check(self, value: Any, *, base_dir: Path | None = None) -> list[str]:
        """Problems with a typed value, each prefixed with ``param 'NAME':``; empty if fine."""
        if value is None:
            return []
        problems = self._check(value, base_dir)
        for validator in self.validators:
            problem = validator(value)
            if problem:
                problems.append(problem)
        return [f"param '{self.name}': {problem}" for problem in problems]

    def to_json(self, value: Any) -> Any:
        """The value as JSON (what the store keeps and ``coerce`` reads back)."""
        return value

    def describe(self) -> dict[str, Any]:
        """This declaration as JSON-ready data, for ``--help`` and the web form."""
        condition = self.condition
        if condition is not None and not isinstance(condition, str):
            condition = f"<function {getattr(condition, '__name__', 'condition')}>"
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "label": self.label,
            "help": self.help,
            "default": None if self.default is None else self.to_json(self.default),
            "required": self.required,
            "optional": self.optional,
            "condition": condition,
        }
        # only when set: a declaration without form hints describes itself as it always did
        if self.section:
            data["section"] = self.section
        if self.wizard:
            data["wizard"] = self.wizard
        data.update(self._describe_extra())
        return data

    def _coerce(self, value: Any) -> Any:
        raise NotImplementedError

    def _check(self, value: Any, base_dir: Path | None) -> list[str]:
        return []

    def _describe_extra(self) -> dict[str, Any]:
        return {}

    def _fail(self, value: Any, expected: str) -> NoReturn:
        got = "nothing" if value is None else _shown(value)
        raise ParamValueError(self.name, f"expected {expected}, got {got}")


@dataclass(frozen=True, kw_only=True)
class _NumberParam(Param):
    """Shared bounds of IntParam and FloatParam (both inclusive)."""

    min: float | None = None
    max: float | None = None

    def _check(self, value: Any, base_dir: Path | None) -> list[str]:
        if self.min is not None and value < self.min:
            return [f"must be >= {self.min}, got {value}"]
        if self.max is not None and value > self.max:
            return [f"must be <= {self.max}, got {value}"]
        return []

    def _describe_extra(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max}


@dataclass(frozen=True, kw_only=True)
class IntParam(_NumberParam):
    """An integer; accepts ``"12"``, ``12`` and integral floats such as ``12.0``.

    The value must fit a signed 64-bit integer, as every store, JSON reader and numpy array
    that later holds it does: a 5,000-digit number is refused here, by name, not deep in a step.
    """

    kind: ClassVar[str] = "int"

    def _coerce(self, value: Any) -> int:
        if isinstance(value, bool):
            self._fail(value, "an integer")
        number: int | None = None
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and len(value.strip()) <= _MAX_NUMBER_TEXT:
            try:
                number = int(value.strip())
            except ValueError:
                number = None
        if number is None:
            self._fail(value, "an integer")
        if not _INT64_MIN <= number <= _INT64_MAX:
            raise ParamValueError(self.name, f"expected an integer from {_INT64_MIN} to {_INT64_MAX}, "
                                             f"got {_shown(value)}")
        return number


@dataclass(frozen=True, kw_only=True)
class FloatParam(_NumberParam):
    """A finite real number; accepts ``"1.5"``, ``"1e-3"``, ints and floats."""

    kind: ClassVar[str] = "float"

    def _coerce(self, value: Any) -> float:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int beyond any float (10**400)
                number = None
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None or not math.isfinite(number):
            self._fail(value, "a finite number")
        return number


@dataclass(frozen=True, kw_only=True)
class StrParam(Param):
    """A string, optionally matching ``pattern`` (a full-match regular expression)."""

    pattern: str | None = None
    kind: ClassVar[str] = "str"

    def _coerce(self, value: Any) -> str:
        if not isinstance(value, str):
            self._fail(value, "a string")
        return value

    def _check(self, value: Any, base_dir: Path | None) -> list[str]:
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return [f"{_shown(value)} does not match the pattern {self.pattern!r}"]
        return []

    def _describe_extra(self) -> dict[str, Any]:
        return {"pattern": self.pattern}


@dataclass(frozen=True, kw_only=True)
class BoolParam(Param):
    """A flag; accepts true/false, yes/no, on/off, 1/0 in any case, and JSON booleans."""

    kind: ClassVar[str] = "bool"

    def _coerce(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
        self._fail(value, "true or false")


@dataclass(frozen=True, kw_only=True)
class EnumParam(Param):
    """One string out of ``choices``; a near miss gets a "did you mean" hint."""

    choices: Sequence[str] = ()
    kind: ClassVar[str] = "enum"

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices or not all(isinstance(c, str) for c in self.choices):
            raise ParamDefinitionError(f"EnumParam '{self.name}' needs a non-empty list of string choices")
        super().__post_init__()

    def _coerce(self, value: Any) -> str:
        if isinstance(value, str) and value in self.choices:
            return value
        listed = ", ".join(repr(choice) for choice in self.choices)
        hint = suggest(value, self.choices) if isinstance(value, str) else ""
        raise ParamValueError(self.name, f"expected one of {listed}, got {_shown(value)}{hint}")

    def _describe_extra(self) -> dict[str, Any]:
        return {"choices": list(self.choices)}


@dataclass(frozen=True, kw_only=True)
class PathParam(Param):
    """A file system path (``~`` expanded). The value stays as given, relative or absolute.

    ``must_exist`` and ``path_type`` are checked against ``base_dir`` (the current directory
    when none is given) at validation time, i.e. where the run is created; a path that must
    exist on a remote host only is a StrParam.
    """

    must_exist: bool = False
    path_type: Literal["any", "file", "dir"] = "any"
    kind: ClassVar[str] = "path"

    def _coerce(self, value: Any) -> Path:
        if isinstance(value, str | os.PathLike) and str(value).strip():
            return Path(os.path.expanduser(str(value).strip()))
        self._fail(value, "a path")

    def _check(self, value: Any, base_dir: Path | None) -> list[str]:
        full = value if value.is_absolute() or base_dir is None else base_dir / value
        try:
            exists, is_file, is_dir = full.exists(), full.is_file(), full.is_dir()
        except OSError as exc:  # a name the system refuses (too long), a path it cannot search
            return [f"path {_shown(str(full))} cannot be checked: {exc.strerror or exc}"]
        if not exists:
            return [f"path does not exist: {full}"] if self.must_exist else []
        if self.path_type == "file" and not is_file:
            return [f"expected a file, got a directory: {full}"]
        if self.path_type == "dir" and not is_dir:
            return [f"expected a directory, got a file: {full}"]
        return []

    def to_json(self, value: Any) -> Any:
        return str(value)

    def _describe_extra(self) -> dict[str, Any]:
        return {"must_exist": self.must_exist, "path_type": self.path_type}


@dataclass(frozen=True, kw_only=True)
class PointerParam(Param):
    """An input: another run's output of type ``type_name``, given as ``RUN.OUTPUT``.

    Validation only checks the form; the scheduler resolves the pointer against the store
    and binds it (see ``ResolvedParams.bind_inputs``), which checks the output's type.
    """

    type_name: str = ""
    kind: ClassVar[str] = "pointer"

    def __post_init__(self) -> None:
        if not self.type_name:
            raise ParamDefinitionError(f"PointerParam '{self.name}' needs type_name (e.g. 'SetOfParticles')")
        super().__post_init__()

    def _coerce(self, value: Any) -> Pointer:
        if isinstance(value, Pointer):
            return value
        if isinstance(value, str):
            try:
                return Pointer.parse(value)
            except ValueError as exc:
                raise ParamValueError(self.name, str(exc)) from None
        self._fail(value, "RUN.OUTPUT (e.g. '12.particles')")

    def to_json(self, value: Any) -> Any:
        return str(value)

    def _describe_extra(self) -> dict[str, Any]:
        return {"type_name": self.type_name}
