"""A compute node reads the job's id and GPUs under generic names, and imports no queue machinery.

The job scripts (ours and the pilots') export ``ORCH_JOB_ID`` / ``ORCH_JOB_GPUS`` from each
queue's own variables (tested for every backend in test_queue_backends_contract.py); here, the
reading side.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator.hosts import job_env
from orchestrator.hosts.gpus import allocated_gpus
from orchestrator.worker import runtime


def test_the_worker_reads_the_generic_job_id(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLURM_JOB_ID", "JOB_ID", "PBS_JOBID", job_env.JOB_ID):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "17")  # a queue's own name: the job script's business, not ours
    assert runtime._queue_job_id() is None
    monkeypatch.setenv(job_env.JOB_ID, "17")
    assert runtime._queue_job_id() == "17"
    monkeypatch.setenv(job_env.JOB_ID, "")  # exported outside a job: no id
    assert runtime._queue_job_id() is None


def test_the_worker_reads_the_generic_gpu_allocation() -> None:
    assert allocated_gpus({job_env.JOB_GPUS: "2,3"}) == ["2", "3"]
    assert allocated_gpus({"CUDA_VISIBLE_DEVICES": "1", job_env.JOB_GPUS: "0,1"}) == ["1"]


def test_export_lines_refuse_what_is_not_a_variable_name() -> None:
    with pytest.raises(ValueError, match="not an environment variable name"):
        job_env.export_lines("JOB_ID; rm -rf /")


def test_a_compute_node_imports_no_queue_machinery() -> None:
    code = ("import sys, orchestrator.worker.batch_job, orchestrator.worker.runtime, orchestrator.worker.gpus\n"
            "print(sorted(m for m in sys.modules if m.startswith(('orchestrator.hosts.queues', 'orchestrator.hosts"
            ".config', 'orchestrator.scheduler', 'dask_jobqueue', 'jinja2'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
