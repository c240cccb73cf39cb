"""Checks of how a run went, shared by the crash tests of several hosts."""

from __future__ import annotations

from collections import Counter

from orchestrator.project import Project
from orchestrator.store import ProjectStore


def ledger(project: Project, store: ProjectStore, run_id: int) -> Counter[str]:
    path = project.run_dir(store.runs.get(run_id).name) / "ledger.txt"
    return Counter(line.split()[0] for line in path.read_text().splitlines())


def assert_exactly_once(project: Project, store: ProjectStore, run_id: int, count: int) -> set[str]:
    """Every step finished once in the store; a step ran twice only if a kill caught it in flight.

    Returns the names of the steps that were re-queued by a crash recovery.
    """
    steps = {s.id: s for s in store.steps.list(run_id)}
    assert len(steps) == count and all(s.state == "finished" for s in steps.values())
    events = [e for e in store.events.list(run_id=run_id) if e.kind == "step"]
    finished = Counter(e.step_id for e in events if e.state == "finished")
    assert set(finished.values()) == {1} and set(finished) == set(steps)  # recorded exactly once
    requeued = {steps[e.step_id].name for e in events if e.message and e.message.startswith("re-queued")}
    runs = ledger(project, store, run_id)
    assert set(runs) == {s.name for s in steps.values()}
    twice = {name for name, n in runs.items() if n > 1}
    assert twice <= requeued, f"steps ran twice without being in flight at a kill: {twice - requeued}"
    return requeued
