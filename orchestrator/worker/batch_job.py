"""What a step's own batch job runs: ``python -m orchestrator.worker.batch_job PAYLOAD.json``.

The job reads the step's payload (written next to it by the scheduler, with paths as the
compute node sees them) and runs the step with the GPUs the queue allocated to the job, as a
step away from the store: it leaves its outcome record in its attempt folder (the job's own
folder) and never opens the project store. It imports only the worker runtime: nothing of the
queue machinery or the scheduler.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from orchestrator.hosts.gpus import allocated_gpus
from orchestrator.worker.outcome import AttemptReplayed, attempt_dir
from orchestrator.worker.runtime import StepPayload, run_reported_step

PAYLOAD_FILE = "payload.json"
JOB_OUTPUT = "job.out"


def job_dir_for(payload: StepPayload) -> Path:
    """The step's own batch job works in the attempt's folder."""
    return attempt_dir(payload.run_dir, payload.step_name, payload.attempt)


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
        outcome = run_reported_step(payload)
    except AttemptReplayed as exc:
        print(f"not run: {exc}", file=sys.stderr)
        return 3
    if not outcome.ok:
        print(f"step failed: {outcome.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
