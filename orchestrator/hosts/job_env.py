"""The environment every batch job of ours gets, whatever its queue system.

Each queue system names a job's id and the GPUs it allocated in variables of its own (a
backend's ``job_id_variable`` and ``gpu_variables``). Our job scripts (the templates, and the
pilots' scripts through dask-jobqueue's ``job_script_prologue``) copy them into the generic
names below, so that what runs on a compute node (:mod:`orchestrator.worker`) reads only
these and never needs to know, or import, the queue machinery.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: the id of the batch job this process runs in (a pilot, or a step's own job)
JOB_ID = "ORCH_JOB_ID"
#: the GPUs the queue allocated to the job (comma-separated, as the queue wrote them); unset
#: when the queue said nothing, empty when it allocated none
JOB_GPUS = "ORCH_JOB_GPUS"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def export_lines(job_id_variable: str, gpu_variables: Sequence[str] = ()) -> list[str]:
    """Shell lines that set :data:`JOB_ID` and :data:`JOB_GPUS` from a queue's own variables
    (the first of ``gpu_variables`` that is set wins). Safe under ``set -u``."""
    for name in (job_id_variable, *gpu_variables):
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
    lines = [f'export {JOB_ID}="${{{job_id_variable}-}}"', f"unset {JOB_GPUS}"]
    if gpu_variables:
        branches = "; el".join(f'if [ -n "${{{name}+set}}" ]; then export {JOB_GPUS}="${name}"'
                               for name in gpu_variables)
        lines.append(f"{branches}; fi")
    return lines
