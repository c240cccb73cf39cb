"""``orch hosts check``: ask a host for real whether it can run our steps.

Each check runs real commands through the host's runner (:func:`~orchestrator.hosts.runner.runner_for`:
this machine, or the host's SSH target with the same host-key and login rules as every other
SSH use): reachable (SSH), the queue answers and knows the configured queues, the work
directory is writable, GPUs are seen (nvidia-smi on plain machines, the queue's own GPU
declaration on clusters).
"""

from __future__ import annotations

import posixpath
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.errors import QueueCommandError
from orchestrator.hosts.queues import backend_for
from orchestrator.hosts.runner import CommandRunner, runner_for

CHECK_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(name: str, check: Callable[[], tuple[bool, str]]) -> CheckResult:
    t0 = time.perf_counter()
    try:
        ok, detail = check()
    except QueueCommandError as exc:
        ok, detail = False, str(exc)
    return CheckResult(name, ok, detail, round(time.perf_counter() - t0, 3))


def _reachable(runner: CommandRunner, host: HostConfig) -> tuple[bool, str]:
    if host.ssh is None:
        return True, "this machine"
    result = runner.run(["uname", "-n"], timeout_s=CHECK_TIMEOUT_S)
    if not result.ok:
        return False, result.describe()
    return True, f"{host.ssh.destination}:{host.ssh.port} answers (node {result.stdout.strip()})"


def _queue_answers(runner: CommandRunner, host: HostConfig) -> tuple[bool, str]:
    """The queue's controller answers, knows every configured queue, and lists our jobs."""
    backend = backend_for(host)
    command = backend.list_queues_command()
    result = runner.run(command, timeout_s=CHECK_TIMEOUT_S)
    if not result.ok:
        return False, result.describe()
    known = backend.parse_queue_names(result.stdout)
    missing = sorted(set(host.queues) - known)
    if missing:
        return False, f"queue(s) {', '.join(missing)} unknown to the queue system (it has: {', '.join(sorted(known))})"
    status = runner.run(backend.user_jobs_command(backend.user), timeout_s=CHECK_TIMEOUT_S)
    if not status.ok:
        return False, f"status command failed: {status.describe()}"
    return True, f"`{command[0]}` answers; queues {', '.join(sorted(host.queues))} exist"


def _work_dir_writable(runner: CommandRunner, host: HostConfig) -> tuple[bool, str]:
    if not host.work_dir:
        return True, "no work_dir: jobs run in the project's folder (shared file system)"
    runner.make_dirs(host.work_dir)
    probe = posixpath.join(host.work_dir, f".orch-check-{uuid.uuid4().hex[:8]}")
    runner.write_text(probe, "ok\n")
    content = runner.read_text(probe)
    runner.run(["rm", "-f", "--", probe], timeout_s=CHECK_TIMEOUT_S)
    if content != "ok\n":
        return False, f"wrote {probe} but could not read it back"
    return True, f"{host.work_dir} is writable"


def _queue_gpus_seen(runner: CommandRunner, host: HostConfig) -> tuple[bool, str]:
    """The GPUs per node the queue declares, against what the hosts file says."""
    backend = backend_for(host)
    command = backend.gpu_inventory_command()
    if command is None:
        wanted = {q.name: q.gpus for q in host.queues.values() if q.gpus}
        if not wanted:
            return True, "no GPU queues configured"
        return True, f"GPUs as configured ({wanted}); {backend.display_name} nodes are not inspected from here"
    result = runner.run(command, timeout_s=CHECK_TIMEOUT_S)
    if not result.ok:
        return False, result.describe()
    per_queue = backend.parse_gpu_inventory(result.stdout)
    problems = [f"{q.name}: hosts file says {q.gpus} GPU(s) per node, the queue declares {per_queue.get(q.name, 0)}"
                for q in host.queues.values() if q.gpus > per_queue.get(q.name, 0)]
    seen = ", ".join(f"{name}: {n}" for name, n in sorted(per_queue.items())) or "none"
    return (not problems), ("; ".join(problems) if problems else f"GPUs per node the queue declares: {seen}")


def _gpus_seen(runner: CommandRunner, host: HostConfig) -> tuple[bool, str]:
    if host.is_queue:
        return _queue_gpus_seen(runner, host)
    try:
        result = runner.run(["nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader"],
                            timeout_s=CHECK_TIMEOUT_S)
    except QueueCommandError as exc:
        if host.gpus:
            return False, f"hosts file says {host.gpus} GPU(s) but nvidia-smi cannot run: {exc}"
        return True, "no GPUs declared; nvidia-smi not available"
    found = [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.ok else []
    if len(found) < host.gpus:
        return False, f"hosts file says {host.gpus} GPU(s), nvidia-smi sees {len(found)}"
    return True, f"nvidia-smi sees {len(found)} GPU(s)" + (f": {'; '.join(found)}" if found else "")


def check_host(host: HostConfig, runner: CommandRunner | None = None) -> list[CheckResult]:
    """Run every check that applies to ``host``; stop after an unreachable SSH host."""
    runner = runner or runner_for(host)
    results = [_timed("reachable", lambda: _reachable(runner, host))]
    if not results[0].ok:
        return results
    if host.is_queue:
        results.append(_timed("queue answers", lambda: _queue_answers(runner, host)))
    results.append(_timed("work dir writable", lambda: _work_dir_writable(runner, host)))
    results.append(_timed("GPUs seen", lambda: _gpus_seen(runner, host)))
    return results
