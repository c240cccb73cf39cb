"""After a scheduler died (kill -9, power cut): make the store tell the truth again.

Steps the dead scheduler had QUEUED or RUNNING are settled one by one:

- a step that ran away from the store (a pilot, its own batch job, an SSH host) and left its
  outcome record in its attempt folder is recorded from it, as the scheduler would have: it
  finished (or failed) and is not run again. On an SSH host with its own copy of the project,
  the record is fetched from the host, with the step's log, outputs and registered sets;
- a local step's processes are ended (a half-done step cannot be trusted): its worker if the
  pid still names the process that started it, and every process carrying its token, even
  those that outlived their worker; nothing else is ever killed;
- a step in its own batch job that left no record has its job cancelled (``scancel``/``qdel``,
  one command per host), and so has the pilot job a step was running in (its scheduler is gone);
- every step not settled from a record goes back to PENDING, keeping its attempt count and its
  retry budget, so the next scheduler runs it as a new attempt.

FINISHED steps are left alone: what is finished in the store really finished.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from orchestrator.errors import OrchestratorError
from orchestrator.names import LOCAL_HOST
from orchestrator.scheduler.outcomes import record_outcome
from orchestrator.store import ProjectStore, RunState, StepRecord, StepState
from orchestrator.worker.outcome import OUTCOME_FILE, OutcomeError, StepOutcome, attempt_dir, read_outcome
from orchestrator.worker.processes import StepProcesses, step_token

log = logging.getLogger(__name__)


def reconcile_after_crash(store: ProjectStore, project_dir: Path, local_host: str = LOCAL_HOST) -> list[int]:
    """Settle the in-flight steps of RUNNING runs; return the ids of the steps re-queued."""
    requeue: list[tuple[int, int]] = []
    orphan_jobs: dict[str, set[str]] = defaultdict(set)
    for run in store.runs.list([RunState.RUNNING]):
        run_dir = project_dir / "runs" / run.name
        for step in store.steps.list(run.id, [StepState.QUEUED, StepState.RUNNING]):
            if step.host == local_host or not step.host:
                _end_local_step(store, step)
            else:
                if step.job_id:  # its own batch job, or the pilot it ran in (whose scheduler is gone)
                    orphan_jobs[step.host].add(step.job_id)
                if _recorded_from_outcome(store, step, run_dir, project_dir):
                    continue
            requeue.append((step.id, step.attempt))
    for host, job_ids in orphan_jobs.items():
        _cancel_jobs(host, sorted(job_ids), project_dir)
    return store.lifecycle.requeue_steps(requeue, "re-queued: the scheduler stopped while the step was in flight")


def _end_local_step(store: ProjectStore, step: StepRecord) -> None:
    processes = StepProcesses(step_token(store.url, step.id, step.attempt), step.pid, step.proc_start)
    killed = processes.kill(include_worker=True)
    if killed:
        log.warning("ended the orphaned processes %s of step %s (attempt %d)", killed, step.name, step.attempt)


def _recorded_from_outcome(store: ProjectStore, step: StepRecord, run_dir: Path, project_dir: Path) -> bool:
    """Record the step from the outcome its attempt left in its folder; False when there is none."""
    folder = attempt_dir(run_dir, step.name, step.attempt)
    try:
        outcome = read_outcome(folder)
        if outcome is None:
            outcome = _fetch_from_host(store, step, run_dir, project_dir)
    except (OutcomeError, OrchestratorError) as exc:
        log.warning("step %s: its outcome record cannot be used (%s); it runs again", step.name, exc)
        return False
    if outcome is None or outcome.attempt != step.attempt or outcome.step_id != step.id:
        return False
    recorded = record_outcome(store, outcome, folder)
    log.info("step %s (attempt %d) %s while no scheduler ran: recorded from %s", step.name, step.attempt,
             "finished" if outcome.ok else "failed", folder)
    return recorded


def _fetch_from_host(store: ProjectStore, step: StepRecord, run_dir: Path, project_dir: Path) -> StepOutcome | None:
    """The outcome record of an attempt on an SSH host with its own copy of the project, brought
    back with what the scheduler would have brought back (log, outputs, sets); None: none there."""
    from orchestrator.hosts.config.loader import load_hosts
    from orchestrator.hosts.ssh.workers import remote_python
    from orchestrator.protocol import Step
    from orchestrator.scheduler.staging import HostStaging

    host = load_hosts(project_dir).get(step.host or "")
    if host.ssh is None or host.shared_fs or host.is_queue:
        return None
    with HostStaging(host, store, project_dir, python=remote_python(host)) as staging:
        remote_run = staging.remote_run_dir(run_dir)
        record = f"{remote_run}/{attempt_dir('.', step.name, step.attempt)}/{OUTCOME_FILE}"
        try:
            staging.stager.stage_out(step.run_id, [record], run_dir, remote_base=remote_run, step_id=step.id)
        except OrchestratorError as exc:  # the attempt left no record there: it runs again
            log.info("step %s: no outcome record on host %s (%s)", step.name, host.name, exc)
            return None
        outcome = read_outcome(attempt_dir(run_dir, step.name, step.attempt))
        if outcome is None:
            return None
        as_step = Step(name=step.name, func=step.func, outputs=tuple(outcome.outputs))
        staged = staging.stage_out(step.run_id, as_step, run_dir, outcome, step_id=step.id)
        outcome.log_note = f"; the whole log is in {staged.log_path}"
        if outcome.result is not None:
            outcome.result = staging.path_map.to_local(outcome.result)
        return outcome


def _cancel_jobs(host_name: str, job_ids: list[str], project_dir: Path) -> None:
    """End the batch jobs a dead scheduler left; a host that cannot be asked is only logged."""
    from orchestrator.hosts.config.loader import load_hosts
    from orchestrator.hosts.queues import backend_for
    from orchestrator.hosts.runner import runner_for

    try:
        host = load_hosts(project_dir).get(host_name)
        if not host.is_queue:
            return
        backend = backend_for(host)
        result = runner_for(host).run(backend.cancel_command(job_ids), timeout_s=60)
    except OrchestratorError as exc:
        log.warning("could not cancel the orphaned jobs %s on host %s: %s", job_ids, host_name, exc)
        return
    log.warning("cancelled orphaned batch jobs %s on host %s (%s)", job_ids, host_name,
                "done" if backend.cancel_succeeded(result) else result.describe())
