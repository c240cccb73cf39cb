"""A step on a host that sees the project under other paths, or has its own copy of it.

The step runs like any step away from the store (:func:`~orchestrator.worker.runtime.run_reported_step`:
an outcome record in its attempt folder, nothing written to the store), with the payload's paths
(run folder, log, arguments, params, exported input sets) rewritten by a :class:`PathMap` before
it runs, and the paths in its result mapped back after: on a cluster whose nodes mount the
project elsewhere (a hosts file's ``path_map``), and on an SSH host with its own copy of the
project, where the scheduler's side also brings the log, the outputs and the registered sets
back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePath, PurePosixPath
from typing import Any

from orchestrator.worker.outcome import StepOutcome
from orchestrator.worker.runtime import StepPayload, run_reported_step


def _under(text: str, root: str) -> bool:
    return text == root or text.startswith(root + "/")


@dataclass(frozen=True)
class PathMap:
    """The project folder here and its copy on the host; strings naming paths inside one are
    rewritten into the other (exact prefix, on path boundaries: ``/p/proj2`` is not under ``/p/proj``).

    ``extra`` holds further (local prefix, remote prefix) pairs, for staged inputs that live
    outside the project (raw movies on an acquisition disk); the longest prefix wins.
    """

    local_project_dir: str
    remote_project_dir: str
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, str]], default_root: str) -> PathMap:
        """A map made of (local prefix, host prefix) pairs (a hosts file's ``path_map``); with no
        pair, the identity on ``default_root`` (the host sees this machine's paths)."""
        if not pairs:
            return cls(default_root, default_root)
        (local, remote), *extra = pairs
        return cls(local, remote, tuple(extra))

    def __post_init__(self) -> None:
        for name in ("local_project_dir", "remote_project_dir"):
            value = os.fspath(getattr(self, name))
            if not value.startswith("/"):
                raise ValueError(f"PathMap.{name} must be an absolute path, got {value!r}")
            object.__setattr__(self, name, value.rstrip("/") or "/")
        object.__setattr__(self, "extra", tuple((a.rstrip("/"), b.rstrip("/")) for a, b in self.extra))

    @property
    def _pairs(self) -> list[tuple[str, str]]:
        pairs = [(self.local_project_dir, self.remote_project_dir), *self.extra]
        return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)

    def _map(self, value: Any, pairs: list[tuple[str, str]]) -> Any:
        if isinstance(value, str):
            for source, target in pairs:
                if _under(value, source):
                    return target + value[len(source):]
            return value
        if isinstance(value, PurePath):
            return type(value)(self._map(str(value), pairs))
        if isinstance(value, Mapping):
            return {key: self._map(item, pairs) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._map(item, pairs) for item in value)
        return value

    def to_remote(self, value: Any) -> Any:
        """``value`` (a string, or lists/dicts of them, recursively) with local paths made remote."""
        return self._map(value, self._pairs)

    def to_local(self, value: Any) -> Any:
        """The reverse of :meth:`to_remote`, for what a step returns."""
        reverse = [(remote, local) for local, remote in self._pairs]
        return self._map(value, sorted(reverse, key=lambda pair: len(pair[0]), reverse=True))




def remote_log_path(path_map: PathMap, payload: StepPayload) -> PurePosixPath:
    """Where the step's log is on the host: ``<remote run dir>/logs/<step>.log``."""
    return PurePosixPath(path_map.to_remote(payload.run_dir)) / "logs" / f"{payload.step_name}.log"


def reachable_store(url: str) -> str:
    """A server store (PostgreSQL) may be reachable from the host; a SQLite file here is not."""
    return url if url.startswith(("postgresql", "postgres:")) else ""


def remote_payload(payload: StepPayload, path_map: PathMap) -> StepPayload:
    """The payload as the host sees it: its paths in the host's copy of the project."""
    return replace(payload, project_dir=path_map.remote_project_dir, run_dir=path_map.to_remote(payload.run_dir),
                   log_path=str(remote_log_path(path_map, payload)), args=path_map.to_remote(payload.args),
                   params=path_map.to_remote(payload.params), store_url=reachable_store(payload.store_url),
                   sets_dir=path_map.to_remote(payload.sets_dir) if payload.sets_dir else "")


def run_mapped_step(payload: StepPayload, path_map: PathMap, gpus: int = 0, worker_gpus: int = 0,
                    sharing: bool = False) -> StepOutcome:
    """:func:`run_remote_step`, leasing ``gpus`` devices of this worker's pool first when it needs any
    (see :mod:`orchestrator.worker.gpus`): how a pilot or SSH worker runs a step."""
    if not gpus:
        return run_remote_step(payload, path_map)
    from orchestrator.worker.gpus import gpus_leased

    with gpus_leased(payload, gpus, worker_gpus, sharing) as leased:
        return run_remote_step(leased, path_map)


def run_remote_step(payload: StepPayload, path_map: PathMap) -> StepOutcome:
    """Run one attempt in the host's copy of the project; the outcome's result has local paths again.

    ``payload`` is the same as for a shared-file-system host, with local paths; its
    ``store_url`` reaches the step only for a PostgreSQL store (the host may reach the server).
    """
    outcome = run_reported_step(remote_payload(payload, path_map))
    if outcome.result is not None:
        outcome.result = path_map.to_local(outcome.result)
    return outcome
