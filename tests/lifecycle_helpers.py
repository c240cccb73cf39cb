"""Putting runs and steps into a state for a test, through the lifecycle (never around it).

Tests that need a project in some state (a failed run, a running step on a worker) drive it
there with the same transitions the scheduler and the workers use, so a fixture can never
hold a state the real code could not produce.
"""

from __future__ import annotations

from typing import Any

from orchestrator.store import ProjectStore, QueuedAttempt, RunState, StepState


def put_run(store: ProjectStore, run_id: int, state: RunState, error: str | None = None) -> None:
    """Walk a run from where it is to ``state`` (CREATED -> QUEUED -> RUNNING -> an end)."""
    lifecycle = store.lifecycle
    current = store.runs.get(run_id).run_state
    if current.is_final and state is not current:
        lifecycle.restart_run(run_id)
        current = RunState.QUEUED
    if state is RunState.CANCELLED:
        lifecycle.cancel_run(run_id)
        return
    if current is RunState.CREATED and state is not RunState.CREATED:
        lifecycle.queue_run(run_id)
        current = RunState.QUEUED
    if current is RunState.QUEUED and state in (RunState.RUNNING, RunState.FINISHED):
        lifecycle.start_run(run_id)
    if state is RunState.FINISHED:
        lifecycle.finish_run(run_id, [])
    elif state is RunState.FAILED:
        lifecycle.fail_run(run_id, error or "failed")


def put_step(store: ProjectStore, step_id: int, state: StepState, host: str = "local", **fields: Any) -> int:
    """Walk a step to ``state`` as a new attempt (QUEUED -> RUNNING -> an end); returns the attempt.

    ``fields`` go with the transition into ``state`` (worker, pid, duration_s, error, result...).
    """
    lifecycle = store.lifecycle
    step = store.steps.get(step_id)
    attempt = step.attempt + 1
    if state is StepState.PENDING:
        return step.attempt
    if state is StepState.CANCELLED:
        lifecycle.cancel_steps([step_id], "cancelled", sources=(StepState.PENDING, StepState.QUEUED,
                                                               StepState.RUNNING))
        return step.attempt
    lifecycle.queue_steps([QueuedAttempt(step_id, attempt, host)])
    if state is StepState.QUEUED:
        if fields:
            lifecycle.annotate_step(step_id, attempt, **fields)
        return attempt
    start = {k: fields.pop(k) for k in ("worker", "pid", "proc_start", "gpus", "started_at", "job_id")
             if k in fields}
    lifecycle.start_step(step_id, attempt, host=host, **start)
    if state is StepState.FINISHED:
        lifecycle.finish_step(step_id, attempt, fields.pop("result", None), **fields)
    elif state is StepState.FAILED:
        lifecycle.fail_step(step_id, attempt, fields.pop("error", "failed"), **fields)
    elif fields:
        lifecycle.annotate_step(step_id, attempt, **fields)
    return attempt
