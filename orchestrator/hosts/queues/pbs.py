r"""PBS Professional / OpenPBS: qsub, one ``qstat -x -f -F json`` for many jobs, qdel; pilots
are dask-jobqueue's PBSCluster.

No PBS server can be installed where the tests run: this backend is checked against PBS Pro's
documented output formats (``qstat -f -F json`` and the ``qstat -x -f`` text form) and its
qsub's source, not against a live server. Finished jobs stay visible to ``qstat -x`` (job
history), which is also where accounting comes from.

How qsub reads ``#PBS`` lines (``get_script`` in ``src/cmds/qsub_sup.c``, ``make_argv`` in
``src/cmds/qsub.c`` of OpenPBS, the code of PBS Professional): words are split at whitespace;
``'...'`` and ``"..."`` group characters literally (no escape inside); outside quotes a
backslash takes the next character literally; ``#`` has no special meaning after the prefix;
a line that ends in a backslash continues on the next one. So a value is written in single
quotes, a ``'`` in it as ``'\''``; only a line break or NUL cannot be written (qsub also
refuses scripts with CR LF line ends). ``-o`` is ``[hostname:]path`` and must be printable
ASCII (``prepare_path``), and PBS copies the output there when the job ends (stage-out, which
may go through a remote shell): only a plain absolute path is given to ``-o``; any other is
written by the job script itself, with the queue's copy sent to ``/dev/null``. PBS has no
working-directory directive: the job script changes to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.hosts.config.model import PilotConfig, QueueConfig
from orchestrator.hosts.config.units import format_hms, parse_duration_s, parse_size_mb
from orchestrator.hosts.errors import JobSubmitError, QueueCommandError
from orchestrator.hosts.queues.base import LINE_BREAKERS, JobAccounting, JobState, JobStatus, QueueBackend
from orchestrator.hosts.runner import CommandResult
from orchestrator.protocol.steps import Resources

P, R = JobState.PENDING, JobState.RUNNING

# job_state letters -> ours. F (finished) and X (finished sub-job) are decided by Exit_status.
STATES = {"Q": P, "H": P, "W": P, "T": P, "M": P, "R": R, "E": R, "B": R, "S": R, "U": R}
FINISHED = {"F", "X"}
REASONS = {"H": "held", "W": "waiting for its start time", "T": "in transit", "M": "moved to another server",
           "S": "suspended", "U": "suspended (workstation busy)", "E": "exiting"}
_JOB_ID = re.compile(r"^\s*(\d+(?:\[\d*\])?(?:\.[\w.-]+)?)\s*$")
_HARMLESS_STDERR = ("Unknown Job Id", "Job has finished")
# what qsub's directive parser reads as plain text (no whitespace, quote or backslash)
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+=,%-]+$")
# an output path that survives qsub's prepare_path and the stage-out copy as it is
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9_./@+=,%-]*$")


def finished_state(exit_status: int | None, comment: str) -> tuple[JobState, str | None]:
    """PBS Pro's Exit_status: 0 ok, 1-255 the script's code, >= 256 killed by signal
    (status - 256), < 0 PBS could not run the job (JOB_EXEC_* codes)."""
    if exit_status is None:
        return JobState.CANCELLED, "ended without an exit status (deleted before it ran)"
    if exit_status == 0:
        return JobState.DONE, None
    if exit_status < 0:
        return JobState.FAILED, f"PBS could not run the job (Exit_status {exit_status})"
    if exit_status >= 256:
        if "deleted" in comment.lower() or "qdel" in comment.lower():
            return JobState.CANCELLED, f"deleted (killed by signal {exit_status - 256})"
        return JobState.FAILED, f"killed by signal {exit_status - 256}" + (f": {comment}" if comment else "")
    return JobState.FAILED, f"exit status {exit_status}"


def parse_qstat_text(text: str) -> dict[str, dict[str, Any]]:
    """``qstat -f`` text (``Job Id: ...`` blocks, ``key = value`` lines, tab-indented
    continuations) -> the same nested shape as ``-F json`` (``resources_used.mem`` nested)."""
    jobs: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    last_key: str | None = None
    for raw in text.splitlines():
        if raw.startswith("Job Id:"):
            current = jobs.setdefault(raw.split(":", 1)[1].strip(), {})
            last_key = None
        elif current is None or not raw.strip():
            continue
        elif raw.startswith("\t") and last_key is not None:
            _append(current, last_key, raw.strip())
        elif " = " in raw:
            key, value = raw.strip().split(" = ", 1)
            _store(current, key, value)
            last_key = key
    return jobs


def _store(job: dict[str, Any], key: str, value: str) -> None:
    if "." in key:
        group, sub = key.split(".", 1)
        job.setdefault(group, {})[sub] = value
    else:
        job[key] = value


def _append(job: dict[str, Any], key: str, more: str) -> None:
    if "." in key:
        group, sub = key.split(".", 1)
        job[group][sub] = str(job[group][sub]) + more
    else:
        job[key] = str(job[key]) + more


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _nodes(exec_host: str | None) -> str | None:
    """``node1/0*8+node2/0*8`` -> ``node1,node2``."""
    if not exec_host:
        return None
    names = dict.fromkeys(part.split("/")[0] for part in str(exec_host).split("+") if part)
    return ",".join(names) or None


def _gpus(job: Mapping[str, Any]) -> int | None:
    resources = job.get("Resource_List") or {}
    if "ngpus" in resources:
        return _int(resources["ngpus"])
    found = re.findall(r"ngpus=(\d+)", str(job.get("exec_vnode", "")))
    return sum(int(n) for n in found) if found else None


class PbsBackend(QueueBackend):
    kind = "pbs"
    display_name = "PBS Pro / OpenPBS"
    template_name = "pbs.sh.j2"
    directive_prefix = "#PBS"
    STATES = STATES
    default_gpu_request = "ngpus={n}"
    default_memory_request = "mem={mb}mb"
    job_id_variable = "PBS_JOBID"
    # PBS Pro's cgroups hook binds a job's GPUs through CUDA_VISIBLE_DEVICES, which every worker reads.
    gpu_variables = ()
    pilot_class = "PBSCluster"

    def match_key(self, job_id: str) -> str:
        return job_id.split(".", 1)[0]

    def directives(self, resources: Resources, queue: QueueConfig) -> list[str]:
        plan = self.plan(resources, queue)
        chunk = [str(plan.nodes), f"ncpus={plan.cores_per_node}", f"mpiprocs={plan.ranks_per_node}"]
        if plan.memory_mb_per_node:
            request = self.memory_request(queue, plan.memory_mb_per_node, plan.cores_per_node)
            if request:
                chunk.append(request)
        if plan.gpus_per_node:
            chunk.append(self.gpu_request(queue, plan.gpus_per_node))
        lines = [f"-q {queue.name}", f"-l select={':'.join(chunk)}"]
        if plan.nodes > 1:
            lines.append("-l place=scatter")
        walltime = self.walltime_s(resources, queue)
        if walltime:
            lines.append(f"-l walltime={format_hms(walltime)}")
        return lines + list(self.host.extra_directives) + list(queue.extra_directives)

    def quote_directive(self, value: str) -> str | None:
        if any(c in value for c in LINE_BREAKERS):
            return None
        if _PLAIN.match(value):
            return value
        return "'" + value.replace("'", "'\\''") + "'"

    def output_directive(self, path: str) -> str | None:
        return f"-o {path} -j oe" if _PLAIN_PATH.match(path) else None

    def submit_command(self) -> list[str]:
        return ["qsub"]

    def parse_job_id(self, text: str) -> str:
        for line in reversed([line for line in text.splitlines() if line.strip()]):
            match = _JOB_ID.match(line)
            if match:
                return match.group(1)
        raise JobSubmitError(f"qsub printed no job id: {text.strip()[:300]!r}")

    def status_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["qstat", "-x", "-f", "-F", "json", *job_ids]

    def _jobs(self, text: str) -> dict[str, dict[str, Any]]:
        stripped = text.lstrip()
        if not stripped:
            return {}
        if stripped.startswith("{"):
            try:
                data = json.loads(stripped, strict=False)
            except json.JSONDecodeError as exc:
                raise QueueCommandError(f"qstat -F json printed invalid JSON ({exc})") from None
            jobs = data.get("Jobs", {})  # absent when no job matched
            if not isinstance(jobs, dict):
                raise QueueCommandError("qstat -F json: 'Jobs' is not an object")
            return jobs
        if stripped.startswith("Job Id:"):
            return parse_qstat_text(text)
        raise QueueCommandError(f"unexpected qstat output: {stripped[:200]!r}")

    def parse_status(self, text: str) -> dict[str, JobStatus]:
        statuses = {}
        for job_id, job in self._jobs(text).items():
            code = str(job.get("job_state", ""))
            used = job.get("resources_used") or {}
            comment = str(job.get("comment", ""))
            exit_code = _int(job.get("Exit_status"))
            if code in FINISHED:
                state, reason = finished_state(exit_code, comment)
            else:
                state = self.map_state(code)
                reason = REASONS.get(code) or (comment if state is P and comment else None)
            gpus = _gpus(job)
            statuses[job_id] = JobStatus(
                job_id=job_id, state=state, native_state=code, queue=job.get("queue"),
                elapsed_s=parse_duration_s(str(used.get("walltime", ""))), nodes=_nodes(job.get("exec_host")),
                gpus=str(gpus) if gpus else None, reason=reason, exit_code=exit_code)
        return statuses

    def read_status(self, result: CommandResult) -> dict[str, JobStatus]:
        # qstat exits non-zero when one of the ids is unknown (history expired) but still
        # prints the others.
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        if not result.ok and errors and all(any(h in line for h in _HARMLESS_STDERR) for line in errors):
            return self.parse_status(result.stdout)
        return super().read_status(result)

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["qdel", *job_ids]

    def cancel_succeeded(self, result: CommandResult) -> bool:
        if result.ok:
            return True
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        return bool(errors) and all("Unknown Job Id" in line or "Job has finished" in line
                                    or "Request invalid for state of job" in line for line in errors)

    def accounting_commands(self, job_ids: Sequence[str]) -> list[list[str]]:
        return [self.status_command(job_ids)]

    def read_accounting(self, result: CommandResult) -> dict[str, JobAccounting]:
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        if not result.ok and errors and all(any(h in line for h in _HARMLESS_STDERR) for line in errors):
            return self.parse_accounting(result.stdout)
        return super().read_accounting(result)

    def parse_accounting(self, text: str) -> dict[str, JobAccounting]:
        records = {}
        for job_id, job in self._jobs(text).items():
            if str(job.get("job_state", "")) not in FINISHED:
                continue
            used = job.get("resources_used") or {}
            exit_code = _int(job.get("Exit_status"))
            state, detail = finished_state(exit_code, str(job.get("comment", "")))
            records[job_id] = JobAccounting(
                job_id=job_id, state=state, native_state=f"F Exit_status={exit_code}",
                exit_code=exit_code if exit_code is not None and 0 <= exit_code < 256 else None,
                signal=exit_code - 256 if exit_code is not None and exit_code >= 256 else None,
                elapsed_s=parse_duration_s(str(used.get("walltime", ""))),
                cpu_time_s=parse_duration_s(str(used.get("cput", ""))),
                max_memory_mb=parse_size_mb(str(used.get("mem", ""))),
                nodes=_nodes(job.get("exec_host")), gpus=_gpus(job), detail=detail)
        return records

    def pilot_kwargs(self, pilot: PilotConfig, queue: QueueConfig) -> dict[str, Any]:
        # one select chunk with everything, GPUs in the queue's syntax
        chunk = [f"select=1:ncpus={pilot.cores}", f"mem={pilot.memory_mb}mb"]
        if pilot.gpus:
            chunk.append(self.gpu_request(queue, pilot.gpus))
        return {"resource_spec": ":".join(chunk)}

    def list_queues_command(self) -> list[str]:
        return ["qstat", "-Q"]

    def parse_queue_names(self, text: str) -> set[str]:
        lines = [line for line in text.splitlines() if line.strip()]
        return {line.split()[0] for line in lines[2:]}  # two header lines

    def user_jobs_command(self, user: str) -> list[str]:
        return ["qstat", "-u", user]
