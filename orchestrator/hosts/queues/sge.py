"""Grid Engine (SGE / Son of Grid Engine / OGS): qsub, one ``qstat -xml`` for all jobs, qdel, qacct."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime

from orchestrator.hosts.config.model import HostKind, QueueConfig
from orchestrator.hosts.config.units import format_hms, parse_size_mb
from orchestrator.hosts.errors import AccountingUnavailable, JobSubmitError, QueueCommandError
from orchestrator.hosts.queues.base import JobAccounting, JobState, JobStatus, QueueBackend
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


def _number(text: str | None) -> float | None:
    match = re.match(r"^\s*(-?\d+(?:\.\d+)?)", text or "")
    return float(match.group(1)) if match else None


class SgeBackend(QueueBackend):
    kind = HostKind.SGE
    template_name = "sge.sh.j2"
    STATES = STATES
    default_gpu_request = "-l gpu={n}"
    default_memory_request = "-l h_vmem={mb_per_cpu}M"

    def directives(self, resources: Resources, queue: QueueConfig) -> list[str]:
        plan = self.plan(resources, queue)
        slots = resources.cpus * resources.mpi_ranks
        lines = [f"-q {queue.name}"]
        if slots > 1:
            lines.append(f"-pe {queue.parallel_env} {slots}")
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
            raise AccountingUnavailable(f"no readable SGE accounting file on host {self.host.name!r}: "
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
