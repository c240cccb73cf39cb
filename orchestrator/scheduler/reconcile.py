"""After a scheduler died (kill -9, power cut): make the store tell the truth again.

Steps the dead scheduler had QUEUED never started or were lost with its cluster; steps it
had RUNNING ran in worker processes that may have outlived it. Those processes are killed
(a half-done step cannot be trusted), then the steps go back to PENDING so the next
scheduler runs them. FINISHED steps are left alone: workers record FINISHED themselves,
so what is finished in the store really finished, and is not run again.
"""

from __future__ import annotations

import logging

from orchestrator.scheduler.process_tree import is_alive, kill_tree
from orchestrator.store import ProjectStore, RunState, StepState, StepTransition

log = logging.getLogger("orchestrator.scheduler")


def reconcile_after_crash(store: ProjectStore, local_host: str = "local") -> list[int]:
    """Re-queue the in-flight steps of RUNNING runs; return the ids of the steps re-queued."""
    requeue: list[StepTransition] = []
    for run in store.runs.list([RunState.RUNNING]):
        for step in store.steps.list(run.id, [StepState.QUEUED, StepState.RUNNING]):
            local = step.state == StepState.RUNNING.value and step.host == local_host
            if local and step.pid is not None and is_alive(step.pid):
                log.warning("killing orphaned worker %s of step %s (run %s)", step.pid, step.name, run.name)
                kill_tree(step.pid)
            requeue.append(StepTransition(
                step.id, StepState.PENDING, f"re-queued: the scheduler stopped while the step was {step.state}",
                {"worker": None, "pid": None}, expected=(StepState.QUEUED, StepState.RUNNING)))
    return store.steps.transitions(requeue)
