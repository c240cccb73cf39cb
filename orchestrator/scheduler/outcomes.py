"""Recording what a step away from the store reported, and giving such a step its input sets.

A step on a pilot, in its own batch job or on an SSH host never opens the project store (see
:mod:`orchestrator.worker.outcome`). The scheduler, on the store's machine, records its
outcome through the lifecycle, with the sets it saved in its attempt folder created in the
same transaction as its end; and before such a step runs on a SQLite project, it exports the
run's input sets to files the step reads instead of the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestratorError
from orchestrator.protocol import OutputRef
from orchestrator.protocol.sets import referenced_set_ids
from orchestrator.store import ProjectStore
from orchestrator.store.engine import is_sqlite
from orchestrator.store.lifecycle import StepEnd
from orchestrator.store.set_files import export_set, exported_set_path, load_pending_set
from orchestrator.worker.outcome import SETS_DIR, StepOutcome

log = logging.getLogger(__name__)

#: where a run's exported input sets live, inside its run folder
EXPORTS_DIR = "inputs/sets"


def record_outcome(store: ProjectStore, outcome: StepOutcome, local_attempt_dir: Path) -> bool:
    """Record a reported attempt's end (fenced by its attempt); True when it was applied.

    ``local_attempt_dir`` is the attempt folder as this machine sees it (where its sets are).
    """
    ended: dict[str, Any] = {"finished_at": datetime.now(UTC), "duration_s": outcome.duration_s,
             "peak_memory_mb": outcome.peak_memory_mb}
    if outcome.ok:
        try:
            sets = [load_pending_set(local_attempt_dir / SETS_DIR / name) for name in outcome.sets]
        except OrchestratorError as exc:
            return store.lifecycle.fail_step(
                outcome.step_id, outcome.attempt, f"the step's registered sets cannot be read: {exc}",
                started=outcome.started_fields(), **ended)
        return store.lifecycle.finish_step(outcome.step_id, outcome.attempt, outcome.result, sets,
                                           started=outcome.started_fields(), **ended)
    where = f"{outcome.log_path} on host {outcome.host}" if outcome.host else outcome.log_path
    error = f"{outcome.error}\n--- last lines of {where}{outcome.log_note} ---\n{outcome.log_tail}"
    return store.lifecycle.fail_step(outcome.step_id, outcome.attempt, error, message=outcome.error,
                                     started=outcome.started_fields(), **ended)


def record_plain_ends(store: ProjectStore, outcomes: list[StepOutcome]) -> set[int]:
    """Record, in one transaction, reported attempts that ended well and registered no set (most
    steps of a big run); the ids of the steps recorded FINISHED (the others were refused)."""
    now = datetime.now(UTC)
    ends = [StepEnd(o.step_id, o.attempt, o.result, o.started_fields(),
                    {"finished_at": now, "duration_s": o.duration_s, "peak_memory_mb": o.peak_memory_mb})
            for o in outcomes if o.ok and not o.sets]
    return set(store.lifecycle.finish_steps(ends))


def needs_exported_sets(store: ProjectStore) -> bool:
    """Steps away from the store read their input sets from exported files when the store is
    SQLite; a PostgreSQL store they reach themselves."""
    return is_sqlite(store.url)


def export_input_sets(store: ProjectStore, inputs: Iterable[OutputRef], run_dir: Path) -> Path:
    """Export every set a run's inputs name (``set_id`` and ``*_set_id`` of their values) into its
    run folder; returns that folder. Done each time the run starts (no step of it is in flight
    then), so a file never outlives the set it copies: a re-run producer replaces its sets."""
    folder = run_dir / EXPORTS_DIR
    for set_id in sorted({i for ref in inputs for i in referenced_set_ids(ref.value)}):
        target = exported_set_path(folder, set_id)
        folder.mkdir(parents=True, exist_ok=True)
        export_set(store.get_set(set_id), target)
        log.info("exported input set %d for the steps of %s that cannot open the store", set_id, run_dir.name)
    return folder
