"""Steps: named calls of module-level functions with JSON arguments and declared resources.

A step is plain data, so that the scheduler can store it, ship it to a worker process on
another machine and answer "has this step already run with these arguments?" from a hash.
The function is therefore kept as its import path (``package.module:function``) and the
arguments must survive a JSON round trip; both are checked here, when the protocol builds
its steps, so a mistake surfaces with the step's and argument's names instead of deep in a
worker.

Paths in ``Step.inputs`` and ``Step.outputs``: a relative path is relative to the run
directory, an absolute path is used as is (inputs coming from other runs are absolute,
see ``OutputRef.files()``). Outputs must stay inside the run directory.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from orchestrator.protocol.errors import StepDefinitionError, StepFunctionError

StepFunction = Callable[..., dict[str, Any] | None]
"""``def my_step(ctx: StepContext, **args) -> dict | None`` defined at module level."""

_STEP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_FUNC_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
RESERVED_ARGS = frozenset({"ctx"})


@dataclass(frozen=True, slots=True)
class Resources:
    """What one step needs from a host. ``None`` means "the host's default / no limit".

    ``memory_mb`` and ``walltime_s`` are per step (for MPI: per job, across all ranks);
    ``cpus`` are per rank, so a step occupies ``cpus * mpi_ranks`` cores.
    """

    cpus: int = 1
    gpus: int = 0
    memory_mb: int | None = None
    walltime_s: int | None = None
    mpi_ranks: int = 1

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.cpus, int) or self.cpus < 1:
            problems.append(f"cpus must be an integer >= 1, got {self.cpus!r}")
        if not isinstance(self.gpus, int) or self.gpus < 0:
            problems.append(f"gpus must be an integer >= 0, got {self.gpus!r}")
        if not isinstance(self.mpi_ranks, int) or self.mpi_ranks < 1:
            problems.append(f"mpi_ranks must be an integer >= 1, got {self.mpi_ranks!r}")
        for name in ("memory_mb", "walltime_s"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                problems.append(f"{name} must be a positive integer or None, got {value!r}")
        if problems:
            raise StepDefinitionError("invalid resources: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpus": self.cpus,
            "gpus": self.gpus,
            "memory_mb": self.memory_mb,
            "walltime_s": self.walltime_s,
            "mpi_ranks": self.mpi_ranks,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Resources:
        unknown = set(data) - {"cpus", "gpus", "memory_mb", "walltime_s", "mpi_ranks"}
        if unknown:
            raise StepDefinitionError(f"unknown resource(s): {', '.join(sorted(unknown))}")
        return cls(**data)


def function_path(func: Callable[..., Any]) -> str:
    """The import path ``module:qualname`` of a module-level function, checked to load back.

    Rejects lambdas, nested functions, bound methods and functions of ``__main__``: a worker
    process could not import any of them by name.
    """
    name = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if not callable(func) or name is None or module is None or inspect.ismethod(func):
        raise StepFunctionError(f"{func!r} is not a module-level function")
    if "<" in name:
        raise StepFunctionError(
            f"step function {module}.{name} is a lambda or nested function; define it at module level"
        )
    if module == "__main__":
        raise StepFunctionError(
            f"step function {name} is defined in __main__, which worker processes cannot import; "
            "move it to an importable module"
        )
    path = f"{module}:{name}"
    if load_function(path) is not func:
        raise StepFunctionError(f"{path} does not load back to the same function; is the name shadowed?")
    return path


def load_function(path: str) -> StepFunction:
    """Import ``package.module:function`` (the function may be ``Class.attr``)."""
    if not _FUNC_PATH.match(path):
        raise StepFunctionError(f"bad step function path {path!r}: expected 'package.module:function'")
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise StepFunctionError(f"cannot import module of step function {path}: {exc}") from exc
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise StepFunctionError(f"step function {path} not found: no attribute {part!r}") from None
    if not callable(target):
        raise StepFunctionError(f"step function {path} is not callable")
    return target  # type: ignore[no-any-return]


def _json_args(step: str, args: Any) -> dict[str, Any]:
    """Check each argument and return the args as a worker will receive them (JSON round trip)."""
    if not isinstance(args, Mapping):
        raise StepDefinitionError(f"step '{step}': args must be a dict, got {type(args).__name__}")
    for key in args:
        if not isinstance(key, str) or not key.isidentifier():
            raise StepDefinitionError(f"step '{step}': arg name {key!r} is not a Python identifier")
        if key in RESERVED_ARGS:
            raise StepDefinitionError(f"step '{step}': arg name '{key}' is reserved for the step context")
    try:
        text = json.dumps(dict(args), allow_nan=False)
    except (TypeError, ValueError):
        for key, value in args.items():  # slow path, only to name the culprit
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise StepDefinitionError(
                    f"step '{step}': arg '{key}' is not JSON-serialisable ({exc}); "
                    "pass plain str/int/float/bool/list/dict values (e.g. str(path))"
                ) from None
        raise
    # Round trip so tuples become lists here too: in-process and remote runs then see the same.
    return json.loads(text)  # type: ignore[no-any-return]


def _paths(
    step: str, what: str, paths: Sequence[str | os.PathLike[str]], inside_run: bool
) -> tuple[str, ...]:
    if isinstance(paths, str | os.PathLike):
        raise StepDefinitionError(f"step '{step}': {what} must be a list of paths, got a single path")
    result = []
    for path in paths:
        if not isinstance(path, str | os.PathLike) or not str(path):
            raise StepDefinitionError(f"step '{step}': {what} holds {path!r}, which is not a path")
        pure = PurePath(path)
        if inside_run and (pure.is_absolute() or ".." in pure.parts):
            raise StepDefinitionError(
                f"step '{step}': {what} path {str(path)!r} must be relative to the run directory"
            )
        result.append(str(path))
    return tuple(result)


@dataclass(frozen=True)
class Step:
    """One step of a run, as data. Built by ``StepGraph.add``; validated on construction.

    - ``name``: unique in the run; letters, digits, ``_ . -`` (used in log file names).
    - ``func``: import path ``package.module:function`` of ``def f(ctx, **args) -> dict | None``.
    - ``args``: JSON-serialisable keyword arguments (already JSON round-tripped).
    - ``resources``: what the step needs on a host.
    - ``deps``: names of the steps of the same run that must finish first.
    - ``inputs``: files it reads (fingerprinted into its hash, staged to remote hosts).
    - ``outputs``: files it writes, relative to the run dir (brought back from remote hosts).
    - ``retries``: attempts after a failure; None means the host's default.
    """

    name: str
    func: str
    args: dict[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    deps: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    retries: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _STEP_NAME.match(self.name):
            raise StepDefinitionError(
                f"bad step name {self.name!r}: use letters, digits, '_', '.', '-' (it names log files)"
            )
        if not isinstance(self.func, str) or not _FUNC_PATH.match(self.func):
            raise StepDefinitionError(
                f"step '{self.name}': func must be 'package.module:function', got {self.func!r}"
            )
        if not isinstance(self.resources, Resources):
            raise StepDefinitionError(f"step '{self.name}': resources must be a Resources")
        if self.retries is not None and (not isinstance(self.retries, int) or self.retries < 0):
            raise StepDefinitionError(
                f"step '{self.name}': retries must be None or >= 0, got {self.retries!r}"
            )
        object.__setattr__(self, "args", _json_args(self.name, self.args))
        object.__setattr__(self, "inputs", _paths(self.name, "inputs", self.inputs, inside_run=False))
        object.__setattr__(self, "outputs", _paths(self.name, "outputs", self.outputs, inside_run=True))
        deps = tuple(self.deps)
        if not all(isinstance(dep, str) for dep in deps):
            raise StepDefinitionError(f"step '{self.name}': deps must be step names, got {deps!r}")
        object.__setattr__(self, "deps", deps)

    def load(self) -> StepFunction:
        """Import the step's function (in the worker, or to hash its source)."""
        return load_function(self.func)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the inverse of :meth:`from_dict` (what the store keeps)."""
        return {
            "name": self.name,
            "func": self.func,
            "args": self.args,
            "resources": self.resources.to_dict(),
            "deps": list(self.deps),
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "retries": self.retries,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        fields = dict(data)
        unknown = set(fields) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise StepDefinitionError(f"step {fields.get('name')!r}: unknown field(s) {sorted(unknown)}")
        fields["resources"] = Resources.from_dict(fields.get("resources") or {})
        for key in ("deps", "inputs", "outputs"):
            fields[key] = tuple(fields.get(key) or ())
        return cls(**fields)
