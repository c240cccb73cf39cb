"""What a step's own batch job runs: ``python -m orchestrator.worker.batch_job PAYLOAD.json``.

The job reads the step's payload (written next to it by the scheduler, with paths as the
compute node sees them) and runs the step with the GPUs the queue allocated to the job. It
imports only the worker runtime: nothing of the queue machinery or the scheduler.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from orchestrator.hosts.gpus import allocated_gpus
from orchestrator.worker.runtime import StepFailed, StepPayload, run_step_task

PAYLOAD_FILE = "payload.json"
JOB_OUTPUT = "job.out"


def host_payload(payload: StepPayload, map_path: Callable[[str], str]) -> StepPayload:
    """The payload with its paths as the queue host sees them (its ``path_map``)."""
    return replace(payload, project_dir=map_path(payload.project_dir), run_dir=map_path(payload.run_dir),
                   log_path=map_path(payload.log_path), store_url=map_path(payload.store_url))


def job_dir_for(payload: StepPayload) -> Path:
    return Path(payload.run_dir) / "jobs" / f"{payload.step_name}.a{payload.attempt}"


def main(argv: list[str] | None = None) -> int:
    """Inside the batch job: run the step with the GPUs the queue gave this job."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m orchestrator.worker.batch_job PAYLOAD.json", file=sys.stderr)
        return 2
    fields = json.loads(Path(args[0]).read_text())
    payload = StepPayload(**fields)
    gpus = allocated_gpus()
    if gpus:
        payload.gpus = [int(g) if g.isdigit() else g for g in gpus]  # type: ignore[misc]
    try:
        run_step_task(payload)
    except StepFailed as exc:
        print(f"step failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
