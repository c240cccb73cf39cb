"""What a step function receives in the worker, and how it is called.

Every step function has the signature ``def my_step(ctx: StepContext, **args) -> dict | None``.
The scheduler builds the context (it knows the project, the run and the GPUs it assigned)
and calls :func:`execute_step` in the worker process; the dict returned is recorded as the
step's result in the store. A result may carry the run's outputs under the key
``"outputs"`` (see :mod:`orchestrator.protocol.outputs`).

What a step may use of the orchestrator is this context and the public modules
(:mod:`orchestrator.protocol`, :mod:`orchestrator.em`, :mod:`orchestrator.objects`): it
reads sets with :meth:`StepContext.open_set`, registers sets with
:meth:`StepContext.register_set` (see :mod:`orchestrator.protocol.sets`) and asks the host
how to start a program with :meth:`StepContext.program`. It never opens the store: the
store may be on another machine, and a step's outputs are recorded with its end.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any, cast

from orchestrator.protocol.errors import ProtocolError, StepDefinitionError, StepResultError
from orchestrator.protocol.sets import (
    PendingSet,
    SetDataError,
    SetReader,
    SetSource,
    placeholder_name,
    set_placeholders,
)
from orchestrator.protocol.steps import load_function


class StepContextError(ProtocolError):
    """A step asked its context for what it cannot give (no set source, a malformed program)."""


@dataclass
class StepContext:
    """The environment of one attempt of one step, passed as the first positional argument.

    ``run_dir`` is the run's working directory on the host that runs the step (not always
    the project's own copy when the host has no shared file system); relative step paths
    resolve against it. ``gpus`` are the device indices assigned to this step (the worker
    also sets ``CUDA_VISIBLE_DEVICES``). ``params`` are the run's params as JSON.
    ``attempt`` counts from 1.

    ``sets`` is where :meth:`open_set` reads input sets (the worker fills it in);
    ``pending_sets`` are the sets the step registered with :meth:`register_set`, created
    when its end is recorded; ``programs`` are the host's configured commands
    (``[hosts.NAME.programs]`` of the hosts file), read with :meth:`program`.
    """

    project_dir: Path
    run_id: int
    run_dir: Path
    step_name: str
    log_path: Path
    gpus: list[int] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    sets: SetSource | None = None
    pending_sets: list[PendingSet] = field(default_factory=list)
    programs: dict[str, list[str]] = field(default_factory=dict)

    def path(self, relative: str | os.PathLike[str]) -> Path:
        """Absolute path of a file of this run; refuses paths that leave the run directory."""
        pure = PurePath(relative)
        if pure.is_absolute() or ".." in pure.parts:
            raise StepDefinitionError(
                f"step '{self.step_name}': path {str(relative)!r} must be relative to the run directory"
            )
        return Path(self.run_dir) / pure

    def log(self, message: str) -> None:
        """Append a timestamped line to the step's log (shown by ``orch status`` / the web UI)."""
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {message}\n")

    def open_set(self, set_id: int) -> SetReader:
        """A read-only view of the project's set ``set_id`` (an input of this step).

        Only sets that exist when the step starts can be read: a set registered by another
        step exists once that step's end is recorded, so a placeholder is not a set id.
        """
        name = placeholder_name(set_id)
        if name is not None:
            raise StepContextError(
                f"step '{self.step_name}': {set_id!r} is a set placeholder, not a set id; the set {name!r} "
                "is created when the step that registered it ends, and has an id only then")
        if isinstance(set_id, bool) or not isinstance(set_id, numbers.Integral) or set_id < 1:
            raise StepContextError(f"step '{self.step_name}': a set id is a positive integer, got {set_id!r}")
        if self.sets is None:
            raise StepContextError(
                f"step '{self.step_name}': cannot read set {set_id}: the step has no set source (ctx.sets); "
                "the worker gives one to every step the scheduler runs")
        return self.sets.open(int(set_id))

    def register_set(self, name: str, item_type: str, columns: Mapping[str, Any],
                     properties: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Register an output set of this step; returns its placeholder ``{"$set": name}``.

        ``columns`` maps column names of ``item_type`` (see
        :data:`orchestrator.objects.columns.SCHEMAS`) to arrays of one length; missing columns
        take their defaults, and an ``id`` column of zeros (or none) lets the set number its
        items. Put the placeholder in the result where the set's id goes (e.g. an output's
        ``set_id``): the set is created when the step's end is recorded, in the same
        transaction, and the placeholder becomes its id. ``properties`` may hold the
        placeholders of sets this step registered before this one. Each name once per step.
        """
        if any(pending.name == name for pending in self.pending_sets):
            raise SetDataError(f"step '{self.step_name}': set {name!r} is registered twice; give each set "
                               "of a step its own name")
        # PendingSet checks both are dicts and copies them (an error naming the set otherwise)
        pending = PendingSet(name, item_type, cast(dict[str, Any], columns), cast(dict[str, Any], properties or {}))
        earlier = {p.name for p in self.pending_sets}
        unknown = [n for n in set_placeholders(pending.properties) if n not in earlier]
        if unknown:
            raise SetDataError(f"step '{self.step_name}': the properties of set {name!r} name set(s) "
                               f"{', '.join(map(repr, unknown))} that the step has not registered before it")
        self.pending_sets.append(pending)
        return pending.placeholder()

    def program(self, name: str, default: list[str]) -> list[str]:
        """The command (argument list) that starts ``name`` on this host, else ``default``.

        A host's owner sets it in the hosts file (``[hosts.NAME.programs]``, e.g.
        ``mpirun = ["mpirun", "--oversubscribe"]``): which program runs is the choice of
        the user or site that owns the host, never of a run's params.
        """
        configured = self.programs.get(name)
        command = list(configured) if configured else list(default)
        if not command or not all(isinstance(word, str) for word in command) or not command[0]:
            source = f"the host's programs.{name}" if configured else "the default"
            raise StepContextError(f"step '{self.step_name}': program {name!r}: {source} must be a non-empty "
                                   f"list of strings, got {command!r}")
        return command


def execute_step(func_path: str, ctx: StepContext, args: dict[str, Any]) -> dict[str, Any] | None:
    """Import and call a step function; return its result after checking it is JSON.

    Takes plain data (an import path, a context, JSON args) so that it can be shipped to a
    dask worker as is. Exceptions raised by the step function propagate unchanged: the
    scheduler records them as the step's failure. Every set placeholder in the result must
    name a set the step registered (``ctx.pending_sets``).
    """
    func = load_function(func_path)
    return _checked_result(func_path, ctx, func(ctx, **args))


def _checked_result(func_path: str, ctx: StepContext, result: Any) -> dict[str, Any] | None:
    """``result`` as strict JSON whose set placeholders all name sets the step registered."""
    if result is None:
        return None
    if not isinstance(result, dict):
        raise StepResultError(
            f"step '{ctx.step_name}' ({func_path}) returned {type(result).__name__}; expected a dict or None"
        )
    try:
        checked: dict[str, Any] = json.loads(json.dumps(result, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise StepResultError(
            f"step '{ctx.step_name}' ({func_path}) returned a result that is not JSON-serialisable: {exc}"
        ) from None
    registered = {pending.name for pending in ctx.pending_sets}
    try:
        unknown = sorted({name for name in set_placeholders(checked) if name not in registered})
    except SetDataError as exc:
        raise StepResultError(f"step '{ctx.step_name}' ({func_path}): {exc}") from None
    if unknown:
        raise StepResultError(
            f"step '{ctx.step_name}' ({func_path}): its result names set(s) {', '.join(map(repr, unknown))} "
            f"that it did not register (registered: {', '.join(sorted(registered)) or 'none'})"
        )
    return checked
