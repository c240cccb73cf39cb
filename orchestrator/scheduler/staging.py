"""Staging for a step on an SSH host without the shared file system, on the scheduler's side.

The host holds a copy of the project under its work dir, one folder per project
(``<work_dir>/<project folder name>-<hash of its absolute path>``), with the same layout as
here: the step's inputs go to the same relative places, so the paths in its arguments map by
prefix (:class:`~orchestrator.worker.remote.PathMap`), and a file that several steps
read is sent once. Inputs outside the project go under ``_abs/<their absolute path>``, as the
:class:`~orchestrator.transfer.stager.Stager` places them.

Before the step: :meth:`HostStaging.stage_in`. After it: :meth:`HostStaging.stage_out`, which
always brings the step's log back, and its outputs when it succeeded. Both run in the
scheduler's process (a thread worker), where the store is.

A HostStaging holds a store and SSH connections, which dask cannot pickle, and a task sent to
a TCP scheduler is pickled even for a worker in the same process. So the dask tasks are the
module functions :func:`stage_in_task` / :func:`stage_out_task`, which name a HostStaging by
the key :func:`register` gave it and find it in this process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.errors import HostError
from orchestrator.hosts.ssh.target import SSHError, SSHTarget
from orchestrator.protocol import Step
from orchestrator.scheduler.executors import live
from orchestrator.store.project_store import ProjectStore
from orchestrator.transfer.errors import TransferError
from orchestrator.transfer.plan import remote_path_for
from orchestrator.transfer.report import StageReport
from orchestrator.transfer.stager import Stager
from orchestrator.worker.outcome import SETS_DIR, StepOutcome, attempt_dir
from orchestrator.worker.remote import PathMap

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class StagingSetupError(HostError):
    """A host's configuration does not allow staging (no SSH section, no absolute work dir)."""


def remote_project_name(project_dir: Path) -> str:
    """Stable per project and machine: two projects with the same folder name do not share a copy."""
    absolute = os.path.abspath(project_dir)
    digest = hashlib.sha256(absolute.encode()).hexdigest()[:10]
    name = _UNSAFE.sub("_", Path(absolute).name).strip("._") or "project"
    return f"{name}-{digest}"


@dataclass(frozen=True)
class StagedOut:
    """What :meth:`HostStaging.stage_out` brought back: the log (where it now is, or why it is not)
    and, after a success, the outputs."""

    log_path: Path
    log_error: str | None
    outputs: StageReport | None


class HostStaging:
    """Inputs to one SSH host's copy of the project, outputs and logs back (see the module docstring).

    ``python`` is the interpreter of the host that the transfer agent runs with (standard
    library only; default ``python3``). Pass a ``stager`` to share one between callers.
    """

    def __init__(self, host: HostConfig, store: ProjectStore, project_dir: Path, *, python: str | None = None,
                 parallel: int | None = None, stager: Stager | None = None) -> None:
        if host.ssh is None:
            raise StagingSetupError(f"host {host.name!r} has no [hosts.{host.name}.ssh] section: nothing to stage to")
        if not host.work_dir.startswith("/"):
            raise StagingSetupError(
                f"host {host.name!r}: work_dir {host.work_dir!r} must be an absolute path on the host "
                f"(staged files go below it)" + (f"; set it in {host.source}" if host.source else ""))
        self.host = host
        self.project_dir = Path(os.path.abspath(project_dir))
        self.remote_project_dir = str(PurePosixPath(host.work_dir) / remote_project_name(self.project_dir))
        self.path_map = PathMap(str(self.project_dir), self.remote_project_dir)
        self.stager = stager or Stager(store, SSHTarget.from_config(host.ssh), host=host.name, parallel=parallel,
                                       python=python or "python3")
        self._own_stager = stager is None

    # ------------------------------------------------------------------ paths
    def remote_run_dir(self, local_run_dir: Path) -> str:
        """The run's folder on the host; the run's folder here must be inside the project."""
        local = os.path.abspath(local_run_dir)
        if not local.startswith(str(self.project_dir).rstrip("/") + "/"):
            raise StagingSetupError(f"host {self.host.name!r}: run folder {local} is not inside the project "
                                    f"{self.project_dir}; only project folders have a copy on the host")
        return str(self.path_map.to_remote(local))

    def input_paths(self, step: Step, local_run_dir: Path) -> list[Path]:
        """The step's inputs as absolute local paths (relative ones are relative to the run dir)."""
        return [Path(os.path.abspath(local_run_dir / p)) for p in step.inputs]

    def path_map_for(self, step: Step, local_run_dir: Path) -> PathMap:
        """:attr:`path_map`, plus the step's inputs that live outside the project (they are
        staged under ``_abs/``, so the step's arguments naming them must follow)."""
        extra = tuple((str(p), str(remote_path_for(p, self.project_dir, PurePosixPath(self.remote_project_dir))))
                      for p in self.input_paths(step, local_run_dir)
                      if not (p == self.project_dir or self.project_dir in p.parents))
        return PathMap(self.path_map.local_project_dir, self.path_map.remote_project_dir, extra)

    # ------------------------------------------------------------------ staging
    def stage_in(self, run_id: int, step: Step, local_run_dir: Path, *, step_id: int | None = None,
                 extra: Sequence[Path] = ()) -> StageReport:
        """Make the host hold the step's inputs (files already there with the same fingerprint are
        not sent again) and the run's folder and logs folder; return local -> remote paths.
        ``extra`` are more files the step reads (the run's exported input sets)."""
        remote_run = self.remote_run_dir(local_run_dir)
        self._mkdir(remote_run, f"{remote_run}/logs")
        inputs = [*self.input_paths(step, local_run_dir), *extra]
        if not inputs:
            return StageReport("in", {})
        return self.stager.stage_in(run_id, inputs, self.remote_project_dir, base=self.project_dir, step_id=step_id)

    def stage_out(self, run_id: int, step: Step, local_run_dir: Path, outcome: StepOutcome, *,
                  step_id: int | None = None) -> StagedOut:
        """Bring back the step's log (always) into ``<run dir>/logs/<step>.log``, then, if the step
        succeeded, its outputs into the run dir; a missing output raises :class:`TransferError`.

        After a failure, a log that cannot be fetched does not hide the step's own error: the
        reason is written into the local log, next to the tail the outcome carries.
        """
        local_run_dir = Path(os.path.abspath(local_run_dir))
        local_log = local_run_dir / "logs" / f"{step.name}.log"
        log_error = self._fetch_log(run_id, step, local_log, outcome, step_id)
        if log_error is not None and outcome.ok:
            raise TransferError(log_error)
        outputs = None
        remote_run = self.remote_run_dir(local_run_dir)
        wanted = list(step.outputs) if outcome.ok else []
        if outcome.ok and outcome.sets:  # the sets it registered, for the scheduler to create
            folder = attempt_dir(".", step.name, outcome.attempt) / SETS_DIR
            wanted += [str(folder / name) for name in outcome.sets]
        if wanted:
            outputs = self.stager.stage_out(run_id, [f"{remote_run}/{o}" for o in wanted], local_run_dir,
                                            remote_base=remote_run, step_id=step_id)
        return StagedOut(local_log, log_error, outputs)

    def close(self) -> None:
        if self._own_stager:
            self.stager.close()

    def __enter__(self) -> HostStaging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers
    def _mkdir(self, *remote_dirs: str) -> None:
        try:
            result = self.stager.shell.run(["mkdir", "-p", "--", *remote_dirs], timeout_s=60)
        except HostError as exc:
            raise TransferError(f"host {self.host.name!r}: cannot create {remote_dirs[0]} there: {exc}") from exc
        if not result.ok:
            raise TransferError(f"host {self.host.name!r}: cannot create {remote_dirs[0]} there: {result.describe()}")

    def _fetch_log(self, run_id: int, step: Step, local_log: Path, outcome: StepOutcome,
                   step_id: int | None) -> str | None:
        remote_log = PurePosixPath(outcome.log_path)
        try:
            self.stager.stage_out(run_id, [str(remote_log)], local_log.parent, remote_base=str(remote_log.parent),
                                  step_id=step_id)
        except (TransferError, SSHError) as exc:
            reason = (f"host {self.host.name!r}: the log of step {step.name!r} could not be brought back from "
                      f"{remote_log}: {exc}")
            if outcome.ok:
                return reason
            log.warning("%s", reason)
            local_log.parent.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            with open(local_log, "a", encoding="utf-8") as handle:
                handle.write(f"{stamp} [orchestrator] {reason}\n--- last lines on the host ---\n{outcome.log_tail}\n")
            return reason
        return None


def register(staging: HostStaging) -> str:
    """Make ``staging`` reachable from dask tasks in this process; return the key they name it by."""
    return live.register("staging", f"{staging.host.name}@{staging.project_dir}", staging)


def unregister(key: str) -> None:
    live.unregister("staging", key)


def _lookup(key: str) -> HostStaging:
    return live.lookup("staging", key, HostStaging)


def stage_in_task(key: str, run_id: int, step: Step, local_run_dir: Path, step_id: int | None = None,
                  extra: Sequence[Path] = ()) -> StageReport:
    """:meth:`HostStaging.stage_in` as a dask task (see the module docstring)."""
    return _lookup(key).stage_in(run_id, step, local_run_dir, step_id=step_id, extra=extra)


def stage_out_task(key: str, run_id: int, step: Step, local_run_dir: Path, outcome: StepOutcome,
                   step_id: int | None = None) -> StagedOut:
    """:meth:`HostStaging.stage_out` as a dask task; ``outcome`` may be the future of the remote step."""
    return _lookup(key).stage_out(run_id, step, local_run_dir, outcome, step_id=step_id)
