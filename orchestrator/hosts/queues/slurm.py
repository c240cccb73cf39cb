r"""SLURM: sbatch, one squeue for many jobs, scancel, sacct; pilots are dask-jobqueue's SLURMCluster.

How sbatch reads ``#SBATCH`` lines (``get_argument`` in ``src/sbatch/opt.c``, 22.05 and
later alike): words are split at whitespace; ``'...'`` and ``"..."`` group characters,
whitespace included; a backslash takes the next character literally everywhere, inside
quotes too (so shell single quotes do not protect a backslash); an unquoted ``#`` starts a
comment; an unmatched quote is fatal. A value is therefore written in double quotes with
``\`` and ``"`` escaped by a backslash, which carries every character but a line break and
NUL (sbatch also refuses scripts with DOS line breaks). ``--output`` is moreover a filename
pattern (sbatch(1), "filename pattern", and ``src/slurmd/common/fname.c``): ``%%`` is a
literal ``%``, and when the pattern holds a backslash no ``%`` is replaced at all and ``\\``
is one backslash.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from orchestrator.hosts.config.model import PilotConfig, QueueConfig
from orchestrator.hosts.config.units import format_hms, parse_duration_s, parse_size_mb
from orchestrator.hosts.errors import AccountingUnavailable, JobSubmitError, QueueCommandError
from orchestrator.hosts.queues.base import LINE_BREAKERS, JobAccounting, JobState, JobStatus, QueueBackend
from orchestrator.hosts.runner import CommandResult
from orchestrator.protocol.steps import Resources

P, R, D, F, C = JobState.PENDING, JobState.RUNNING, JobState.DONE, JobState.FAILED, JobState.CANCELLED

# squeue/sacct state names (22.05) -> ours. COMPLETING still holds the node: running.
STATES = {
    "PENDING": P, "CONFIGURING": P, "REQUEUED": P, "REQUEUE_FED": P, "REQUEUE_HOLD": P,
    "RESV_DEL_HOLD": P,
    "RUNNING": R, "COMPLETING": R, "SIGNALING": R, "STAGE_OUT": R, "RESIZING": R, "SUSPENDED": R,
    "STOPPED": R,
    "COMPLETED": D,
    "FAILED": F, "TIMEOUT": F, "NODE_FAIL": F, "OUT_OF_MEMORY": F, "BOOT_FAIL": F, "DEADLINE": F,
    "PREEMPTED": F, "SPECIAL_EXIT": F,
    "CANCELLED": C, "REVOKED": C,
}

# id | state | partition | elapsed | nodes | GPUs (tres-per-node) | reason (last: may hold anything)
SQUEUE_FORMAT = "%i|%T|%P|%M|%N|%b|%r"
SACCT_FIELDS = "JobID,State,ExitCode,Elapsed,TotalCPU,MaxRSS,NodeList,AllocTRES"
_PARSABLE = re.compile(r"^\s*(\d+(?:_\d+)?)(?:;\S+)?\s*$")
_SUBMITTED = re.compile(r"Submitted batch job (\d+)")
_TRES_GPU = re.compile(r"gres/gpu(?::[^=,]+)?=(\d+)")
_GRES_GPU = re.compile(r"gpu(?::[^:(,]+)?:(\d+)")
# what sbatch's directive parser reads as plain text (no whitespace, quote, backslash or #)
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+=,%-]+$")


def format_time(seconds: int) -> str:
    """Seconds -> ``D-HH:MM:SS`` (sbatch's ``--time``)."""
    days, rest = divmod(int(seconds), 86400)
    hms = format_hms(rest)
    return f"{days}-{hms}" if days else hms


def output_pattern(path: str) -> str:
    """``path`` as an sbatch filename pattern that names exactly that file."""
    return path.replace("\\", "\\\\") if "\\" in path else path.replace("%", "%%")


def _none(text: str) -> str | None:
    text = text.strip()
    return None if text in {"", "N/A", "(null)", "None", "n/a"} else text


class SlurmBackend(QueueBackend):
    kind = "slurm"
    display_name = "SLURM"
    template_name = "slurm.sh.j2"
    directive_prefix = "#SBATCH"
    STATES = STATES
    default_gpu_request = "--gres=gpu:{n}"
    default_memory_request = "--mem={mb}M"
    job_id_variable = "SLURM_JOB_ID"
    gpu_variables = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "GPU_DEVICE_ORDINAL")
    pilot_class = "SLURMCluster"

    def directives(self, resources: Resources, queue: QueueConfig) -> list[str]:
        plan = self.plan(resources, queue)
        lines = [f"--partition={queue.name}", f"--nodes={plan.nodes}", f"--ntasks={resources.mpi_ranks}",
                 f"--cpus-per-task={resources.cpus}"]
        if plan.memory_mb_per_node:
            request = self.memory_request(queue, plan.memory_mb_per_node, plan.cores_per_node)
            if request:
                lines.append(request)
        walltime = self.walltime_s(resources, queue)
        if walltime:
            lines.append(f"--time={format_time(walltime)}")
        if plan.gpus_per_node:
            lines.append(self.gpu_request(queue, plan.gpus_per_node))
        return lines + list(self.host.extra_directives) + list(queue.extra_directives)

    def quote_directive(self, value: str) -> str | None:
        if any(c in value for c in LINE_BREAKERS):
            return None
        if _PLAIN.match(value):
            return value
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def output_directive(self, path: str) -> str | None:
        quoted = self.quote_directive(output_pattern(path))
        return None if quoted is None else f"--output={quoted}"

    def workdir_directive(self, path: str) -> str | None:
        quoted = self.quote_directive(path)
        return None if quoted is None else f"--chdir={quoted}"

    def submit_command(self) -> list[str]:
        return ["sbatch", "--parsable"]

    def parse_job_id(self, text: str) -> str:
        lines = [line for line in text.splitlines() if line.strip()]
        for line in reversed(lines):
            match = _PARSABLE.match(line) or _SUBMITTED.search(line)
            if match:
                return match.group(1)
        raise JobSubmitError(f"sbatch printed no job id: {text.strip()[:300]!r}")

    def status_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["squeue", "--noheader", f"--jobs={','.join(job_ids)}", "--states=all",
                f"--format={SQUEUE_FORMAT}"]

    def parse_status(self, text: str) -> dict[str, JobStatus]:
        statuses = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            parts = line.split("|", 6)
            if len(parts) != 7:
                raise QueueCommandError(f"unexpected squeue line (format {SQUEUE_FORMAT}): {line!r}")
            job_id, state, partition, elapsed, nodes, gres, reason = (p.strip() for p in parts)
            gpus = _none(gres)
            statuses[job_id] = JobStatus(
                job_id=job_id, state=self.map_state(state), native_state=state, queue=_none(partition),
                elapsed_s=parse_duration_s(elapsed), nodes=_none(nodes),
                gpus=gpus.removeprefix("gres:").removeprefix("gres/") if gpus else None, reason=_none(reason))
        return statuses

    def read_status(self, result: CommandResult) -> dict[str, JobStatus]:
        # Every listed job has left squeue (older than MinJobAge): squeue says "Invalid job id".
        if result.exit_code == 1 and "Invalid job id specified" in result.stderr and not result.stdout.strip():
            return {}
        return super().read_status(result)

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["scancel", *job_ids]

    def cancel_succeeded(self, result: CommandResult) -> bool:
        if result.ok:
            return True
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        return bool(errors) and all("already completing or completed" in line or "Invalid job id" in line
                                    for line in errors)

    def accounting_commands(self, job_ids: Sequence[str]) -> list[list[str]]:
        return [["sacct", "--noheader", "--parsable2", f"--jobs={','.join(job_ids)}", f"--format={SACCT_FIELDS}"]]

    def read_accounting(self, result: CommandResult) -> dict[str, JobAccounting]:
        if not result.ok and "accounting storage is disabled" in result.stderr.lower():
            raise AccountingUnavailable(f"no {self.display_name} accounting on host {self.host.name!r} (no slurmdbd): "
                                        "finished jobs are read from their exit sentinel")
        return super().read_accounting(result)

    def parse_accounting(self, text: str) -> dict[str, JobAccounting]:
        """One record per job: the allocation line, with the peak MaxRSS of its steps."""
        records: dict[str, JobAccounting] = {}
        peaks: dict[str, float] = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            parts = line.split("|")
            if len(parts) != 8:
                raise QueueCommandError(f"unexpected sacct line (fields {SACCT_FIELDS}): {line!r}")
            job_id, state, exit_code, elapsed, total_cpu, max_rss, nodes, tres = parts
            base = job_id.split(".", 1)[0]
            rss = parse_size_mb(max_rss)
            if rss is not None:
                peaks[base] = max(peaks.get(base, 0.0), rss)
            if "." in job_id:
                continue
            native = state.split()[0] if state.strip() else ""
            code, _, signal = exit_code.partition(":")
            gpus = _TRES_GPU.search(tres)
            records[base] = JobAccounting(
                job_id=base, state=self.map_state(native), native_state=state.strip(),
                exit_code=int(code) if code.isdigit() else None,
                signal=int(signal) if signal.isdigit() and int(signal) else None,
                elapsed_s=parse_duration_s(elapsed), cpu_time_s=parse_duration_s(total_cpu),
                nodes=_none(nodes), gpus=int(gpus.group(1)) if gpus else (0 if tres else None),
                detail=tres or None)
        return {job_id: _with_peak(record, peaks.get(job_id)) for job_id, record in records.items()}

    def pilot_kwargs(self, pilot: PilotConfig, queue: QueueConfig) -> dict[str, Any]:
        return {"job_extra_directives": [self.gpu_request(queue, pilot.gpus)] if pilot.gpus else []}

    def list_queues_command(self) -> list[str]:
        return ["sinfo", "--noheader", "--format=%R|%a"]

    def parse_queue_names(self, text: str) -> set[str]:
        return {line.split("|")[0].strip() for line in text.splitlines() if line.strip()}

    def user_jobs_command(self, user: str) -> list[str]:
        return ["squeue", "--noheader", f"--user={user}", "--format=%i"]

    def gpu_inventory_command(self) -> list[str] | None:
        return ["sinfo", "--noheader", "--Node", "--format=%N|%R|%G"]

    def parse_gpu_inventory(self, text: str) -> dict[str, int]:
        per_queue: dict[str, int] = {}
        for line in text.splitlines():
            parts = line.split("|")
            if len(parts) == 3:
                count = sum(int(n) for n in _GRES_GPU.findall(parts[2]))
                partition = parts[1].strip()
                per_queue[partition] = max(per_queue.get(partition, 0), count)
        return per_queue


def _with_peak(record: JobAccounting, peak: float | None) -> JobAccounting:
    return record if peak is None else replace(record, max_memory_mb=peak)
