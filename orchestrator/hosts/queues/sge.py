"""Grid Engine (SGE / Son of Grid Engine / OGS): qsub, one ``qstat -xml`` for all jobs, qdel, qacct;
pilots are dask-jobqueue's SGECluster.

How qsub reads ``#$`` lines (``parse_script_file`` in ``source/common/parse_job_cull.c``,
``string_list`` and ``sge_strip_quotes`` in ``source/libs/uti/sge_string.c``): the line is cut
at its first ``#``, whatever quotes surround it; words are split at spaces and tabs except
inside ``'...'`` or ``"..."``, and a word that starts a quote runs to the end of the line (the
closing quote opens it again: ``string_list``); then every ``'`` and ``"`` is removed from
every word. There is no escape character. So a value is written in double quotes, as the last
word of its line, when it holds whitespace, and a value with ``#``, a quote or a line break
cannot be written at all. ``-o`` takes a path list (``[[host]:]path,...``, qsub(1)): a ``,``
cannot be written, a ``:`` is kept by an empty host (``:path``), and the execution host
expands ``$HOME``, ``$USER``, ``$JOB_ID``, ``$JOB_NAME``, ``$HOSTNAME``, ``$TASK_ID`` and a
leading ``~`` (``expand_path`` in ``source/daemons/execd/get_path.c``), so a path with ``$``
or a leading ``~`` is not written either. What cannot be written is left to the job script:
it changes to its working directory and redirects its own output (see
:meth:`QueueBackend.output_directive`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from orchestrator.hosts.config.model import PilotConfig, QueueConfig
from orchestrator.hosts.config.units import format_hms, parse_size_mb
from orchestrator.hosts.config.validate import nonempty_str
from orchestrator.hosts.errors import AccountingUnavailable, JobSubmitError, QueueCommandError
from orchestrator.hosts.queues.base import LINE_BREAKERS, JobAccounting, JobState, JobStatus, QueueBackend, QueueOption
from orchestrator.hosts.runner import CommandResult
from orchestrator.protocol.steps import Resources

P, R, F = JobState.PENDING, JobState.RUNNING, JobState.FAILED

# qstat state codes -> ours. A job being deleted (d...) keeps its state until it leaves the queue;
# a job in error (E...) never runs until someone clears it: failed.
STATES = {
    "qw": P, "hqw": P, "hRwq": P, "Rq": P, "w": P, "h": P, "hqR": P,
    "dqw": P, "dhqw": P,
    "r": R, "t": R, "Rr": R, "Rt": R, "hr": R, "s": R, "ts": R, "S": R, "tS": R, "T": R, "tT": R,
    "dr": R, "dt": R, "dRr": R, "ds": R, "dS": R, "dT": R,
    "Eqw": F, "Ehqw": F, "EhRqw": F, "E": F,
}
# What a letter of a state code tells a person (qstat -j ID says more).
REASONS = {"h": "held", "d": "deletion requested", "E": "error state (see qstat -j)", "s": "suspended",
           "S": "queue suspended", "T": "suspended at threshold", "R": "restarted"}
_JOB_ID = re.compile(r"^\s*(\d+)(?:\.\S+)?\s*$")
_YOUR_JOB = re.compile(r"Your job (\d+)")
_ACCOUNTING_MISSING = ("unable to find", "error: job id")
# what qsub cannot read back from a directive line at all
_UNWRITABLE = ("#", "'", '"', *LINE_BREAKERS)


def _number(text: str | None) -> float | None:
    match = re.match(r"^\s*(-?\d+(?:\.\d+)?)", text or "")
    return float(match.group(1)) if match else None


class SgeBackend(QueueBackend):
    kind = "sge"
    display_name = "Grid Engine"
    template_name = "sge.sh.j2"
    directive_prefix = "#$"
    STATES = STATES
    default_gpu_request = "-l gpu={n}"
    default_memory_request = "-l h_vmem={mb_per_cpu}M"
    job_id_variable = "JOB_ID"
    # Grid Engine has no variable of its own for a job's GPUs: sites that bind GPUs set
    # CUDA_VISIBLE_DEVICES (prolog or resource map), which every worker reads.
    gpu_variables = ()
    pilot_class = "SGECluster"
    queue_options = {
        "parallel_env": QueueOption("smp", nonempty_str, "the parallel environment of multi-core jobs (-pe)"),
    }

    def directives(self, resources: Resources, queue: QueueConfig) -> list[str]:
        plan = self.plan(resources, queue)
        slots = resources.cpus * resources.mpi_ranks
        lines = [f"-q {queue.name}"]
        if slots > 1:
            lines.append(f"-pe {self.queue_option(queue, 'parallel_env')} {slots}")
        if resources.memory_mb:
            request = self.memory_request(queue, resources.memory_mb, slots)
            if request:
                lines.append(request)
        walltime = self.walltime_s(resources, queue)
        if walltime:
            lines.append(f"-l h_rt={format_hms(walltime)}")
        if plan.gpus_per_node:
            lines.append(self.gpu_request(queue, plan.gpus_per_node))
        return lines + list(self.host.extra_directives) + list(queue.extra_directives)

    def quote_directive(self, value: str) -> str | None:
        if any(c in value for c in _UNWRITABLE):
            return None
        return f'"{value}"' if not value or any(c.isspace() for c in value) else value

    def output_directive(self, path: str) -> str | None:
        if "," in path or "$" in path or path.startswith("~"):
            return None
        quoted = self.quote_directive(f":{path}" if ":" in path else path)
        # "-j y" first: a quoted word runs to the end of its line
        return None if quoted is None else f"-j y -o {quoted}"

    def workdir_directive(self, path: str) -> str | None:
        quoted = self.quote_directive(path)
        return None if quoted is None else f"-wd {quoted}"

    def submit_command(self) -> list[str]:
        return ["qsub", "-terse"]

    def parse_job_id(self, text: str) -> str:
        for line in reversed([line for line in text.splitlines() if line.strip()]):
            match = _JOB_ID.match(line) or _YOUR_JOB.search(line)
            if match:
                return match.group(1)
        raise JobSubmitError(f"qsub printed no job id: {text.strip()[:300]!r}")

    def status_command(self, job_ids: Sequence[str]) -> list[str]:
        # qstat cannot list chosen jobs briefly (-j is one verbose page per job): list the
        # user's pending and running jobs in one call; the poller keeps the ones it watches.
        return ["qstat", "-xml", "-u", self.user]

    def map_state(self, code: str) -> JobState:
        if code in self.STATES:
            return self.STATES[code]
        # A combination the table lacks: fall back on its letters, most telling first.
        for letter, state in (("E", F), ("r", R), ("t", R), ("w", P)):
            if letter in code:
                return state
        return JobState.UNKNOWN

    def parse_status(self, text: str) -> dict[str, JobStatus]:
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise QueueCommandError(f"qstat -xml printed no valid XML ({exc}): {text.strip()[:200]!r}") from None
        statuses = {}
        now = datetime.now()
        for job in root.iter("job_list"):
            job_id = (job.findtext("JB_job_number") or "").strip()
            if not job_id:
                continue
            code = (job.findtext("state") or "").strip()
            queue_name = (job.findtext("queue_name") or "").strip()
            queue, _, node = queue_name.partition("@")
            started = job.findtext("JAT_start_time")
            elapsed = None
            if started:
                try:
                    elapsed = max(0.0, (now - datetime.fromisoformat(started.strip())).total_seconds())
                except ValueError:
                    elapsed = None
            reasons = [text for letter, text in REASONS.items() if letter in code]
            if not reasons and self.map_state(code) is P:
                reasons = ["waiting for a slot"]
            statuses[job_id] = JobStatus(
                job_id=job_id, state=self.map_state(code), native_state=code, queue=queue or None,
                elapsed_s=elapsed, nodes=node or None, reason=", ".join(reasons) or None)
        return statuses

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["qdel", *job_ids]

    def cancel_succeeded(self, result: CommandResult) -> bool:
        if result.ok:
            return True
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        return bool(errors) and all("does not exist" in line or "registered the job" in line
                                    or "has deleted job" in line for line in errors)

    def accounting_commands(self, job_ids: Sequence[str]) -> list[list[str]]:
        # qacct takes one job per call; it is only asked about jobs that just left the queue.
        return [["qacct", "-j", job_id] for job_id in job_ids]

    def read_accounting(self, result: CommandResult) -> dict[str, JobAccounting]:
        text = (result.stderr + result.stdout).lower()
        if not result.ok and "error: job id" in text and "not found" in text:
            return {}  # not (yet) in the accounting file
        if not result.ok and ("unable to find" in text or "no such file" in text):
            raise AccountingUnavailable(f"no readable {self.display_name} accounting file on host {self.host.name!r}: "
                                        f"{result.stderr.strip()}")
        return super().read_accounting(result)

    def parse_accounting(self, text: str) -> dict[str, JobAccounting]:
        """``qacct -j`` blocks (one per run of the job; the last one wins)."""
        records: dict[str, JobAccounting] = {}
        for block in re.split(r"^=+\s*$", text, flags=re.MULTILINE):
            fields: dict[str, str] = {}
            for line in block.splitlines():
                key, _, value = line.partition(" ")
                if key:
                    fields[key] = value.strip()
            job_id = fields.get("jobnumber")
            if not job_id:
                continue
            failed_text = fields.get("failed", "0")
            failed = int(_number(failed_text) or 0)
            exit_code = _number(fields.get("exit_status"))
            code = int(exit_code) if exit_code is not None else None
            if failed == 0 and code == 0:
                state, detail = JobState.DONE, None
            elif failed == 0:
                state, detail = JobState.FAILED, f"exit status {code}"
            elif failed == 100 and code in (137, 143):
                state, detail = JobState.CANCELLED, f"killed ({failed_text}); exit status {code}"
            else:
                state, detail = JobState.FAILED, f"failed {failed_text}; exit status {code}"
            memory = fields.get("maxvmem", "")
            records[job_id] = JobAccounting(
                job_id=job_id, state=state, native_state=f"failed={failed} exit_status={code}",
                exit_code=code, signal=code - 128 if code is not None and code > 128 else None,
                elapsed_s=_number(fields.get("ru_wallclock")), cpu_time_s=_number(fields.get("cpu")),
                max_memory_mb=parse_size_mb(memory, default_unit="") if memory else None,
                nodes=fields.get("hostname"), detail=detail)
        return records

    def pilot_kwargs(self, pilot: PilotConfig, queue: QueueConfig) -> dict[str, Any]:
        directives = []
        if pilot.cores > 1:
            directives.append(f"-pe {self.queue_option(queue, 'parallel_env')} {pilot.cores}")
        if pilot.gpus:
            directives.append(self.gpu_request(queue, pilot.gpus))
        # dask-jobqueue's memory request is h_vmem per job; sites differ, so only the queue's own
        # memory_request (if the hosts file gives one) becomes the pilot's resource list.
        request = self.memory_request(queue, pilot.memory_mb, pilot.cores) if queue.memory_request else None
        return {"job_extra_directives": directives,
                "resource_spec": request.removeprefix("-l ").strip() if request else None}

    def list_queues_command(self) -> list[str]:
        return ["qconf", "-sql"]

    def parse_queue_names(self, text: str) -> set[str]:
        return {line.strip() for line in text.splitlines() if line.strip()}

    def user_jobs_command(self, user: str) -> list[str]:
        return ["qstat", "-xml", "-u", user]
