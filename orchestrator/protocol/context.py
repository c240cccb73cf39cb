"""What a step function receives in the worker, and how it is called.

Every step function has the signature ``def my_step(ctx: StepContext, **args) -> dict | None``.
The scheduler builds the context (it knows the project, the run and the GPUs it assigned)
and calls :func:`execute_step` in the worker process; the dict returned is recorded as the
step's result in the store. A result may carry the run's outputs under the key
``"outputs"`` (see :mod:`orchestrator.protocol.outputs`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

from orchestrator.protocol.errors import StepDefinitionError, StepResultError
from orchestrator.protocol.steps import load_function


@dataclass
class StepContext:
    """The environment of one attempt of one step, passed as the first positional argument.

    ``run_dir`` is the run's working directory on the host that runs the step (not always
    the project's own copy when the host has no shared file system); relative step paths
    resolve against it. ``gpus`` are the device indices assigned to this step (the worker
    also sets ``CUDA_VISIBLE_DEVICES``). ``params`` are the run's params as JSON.
    ``attempt`` counts from 1.
    """

    project_dir: Path
    run_id: int
    run_dir: Path
    step_name: str
    log_path: Path
    gpus: list[int] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    store_url: str = ""
    attempt: int = 1

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


def execute_step(func_path: str, ctx: StepContext, args: dict[str, Any]) -> dict[str, Any] | None:
    """Import and call a step function; return its result after checking it is JSON.

    Takes plain data (an import path, a context, JSON args) so that it can be shipped to a
    dask worker as is. Exceptions raised by the step function propagate unchanged: the
    scheduler records them as the step's failure.
    """
    func = load_function(func_path)
    result = func(ctx, **args)
    if result is None:
        return None
    if not isinstance(result, dict):
        raise StepResultError(
            f"step '{ctx.step_name}' ({func_path}) returned {type(result).__name__}; expected a dict or None"
        )
    try:
        return json.loads(json.dumps(result, allow_nan=False))  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise StepResultError(
            f"step '{ctx.step_name}' ({func_path}) returned a result that is not JSON-serialisable: {exc}"
        ) from None
