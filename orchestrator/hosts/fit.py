"""Does a run's every step fit its host? One check per kind of host, for submit time and start time.

A step that asks for more than its host can ever give (GPUs, cores, memory, MPI ranks, wall
time) would wait for ever: it is refused instead, with a message naming the step, the resource
and the host. The same function answers for a kind of host whether the run is being submitted
(:func:`orchestrator.scheduler.submit_fit.check_run_fits`, from the hosts file) or started
(the executors' ``check``, from the host as the scheduler runs it):

- **local**: :func:`check_local_steps` against the :class:`LocalHostSpec` (see
  :mod:`orchestrator.hosts.local_host` for what each key of ``[hosts.local]`` allows);
- **ssh**: :func:`check_ssh_steps`: one worker's share of ``cores`` and ``gpus`` (``workers``
  of them), one MPI rank, and ``memory`` when the file gives it;
- **queue hosts**: :func:`check_queue_steps`: a pilot worker's share, else the job a queue
  would take (the backend's own limits, by rendering the step's job script).

Nothing here starts a process: ``orch run`` calls it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.hosts.config.model import HostConfig, HostKind
from orchestrator.hosts.errors import HostError
from orchestrator.hosts.local_host import LocalHostSpec
from orchestrator.protocol import Step


class DoesNotFitHost(HostError):
    """A run cannot run on its host: a step asks for more than the host has, or the host cannot
    take the run at all. Refused at submit like a bad argument (exit code 2)."""

    exit_code = 2


def check_steps(host: HostConfig, steps: Iterable[Step], local: LocalHostSpec | None = None) -> None:
    """Raise DoesNotFitHost naming the first step that cannot run on ``host``; ``local`` is the
    local host's layout (required for a local host)."""
    if host.kind == HostKind.LOCAL:
        if local is None:
            raise ValueError("checking steps against a local host needs its LocalHostSpec")
        check_local_steps(local, steps)
    elif host.kind == HostKind.SSH:
        check_ssh_steps(host, steps)
    else:
        check_queue_steps(host, steps)


def _refuse(problems: list[str]) -> None:
    if not problems:
        return
    more = f" (and {len(problems) - 1} more step(s) that do not fit)" if len(problems) > 1 else ""
    raise DoesNotFitHost(problems[0] + more)


# -- local --

def local_step_problem(spec: LocalHostSpec, step: Step) -> str | None:
    """Why ``step`` can never run on the local host ``spec`` describes, or None."""
    r = step.resources
    host = f"host '{spec.name}'"
    if r.gpus > spec.max_step_gpus:
        total = len(spec.gpu_devices)
        if r.gpus > total:
            has = f"has {total} GPU(s)" if total else "has no GPUs"
            return f"step '{step.name}' asks for {r.gpus} GPU(s); {host} {has} ({spec.gpu_source or 'none given'})"
        return (f"step '{step.name}' asks for {r.gpus} GPU(s); {host} has {total}, dealt over {spec.workers} "
                f"worker(s), so a step gets at most {spec.max_step_gpus} (its GPUs come from one worker: give "
                f"fewer workers, or gpu_sharing = true)")
    cores = r.cpus * r.mpi_ranks
    if spec.cores is not None and cores > spec.cores:
        return (f"step '{step.name}' asks for {cores} core(s) ({r.cpus} CPU(s) x {r.mpi_ranks} MPI rank(s)); "
                f"{host} has {spec.cores} (cores = {spec.cores})")
    if r.memory_mb is not None and spec.memory_per_worker_mb is not None and r.memory_mb > spec.memory_per_worker_mb:
        return (f"step '{step.name}' asks for {r.memory_mb} MB of memory; each of the {spec.workers} worker(s) of "
                f"{host} may use {spec.memory_per_worker_mb} MB (memory = {spec.memory_mb} MB shared by the "
                "workers: give fewer workers for bigger steps)")
    return None


def check_local_steps(spec: LocalHostSpec, steps: Iterable[Step]) -> None:
    _refuse([p for p in (local_step_problem(spec, step) for step in steps) if p])


# -- ssh --

@dataclass(frozen=True)
class SshWorkerShare:
    """The dask workers started on an SSH host and what each one holds."""

    workers: int
    cpus: int
    gpus: int


def ssh_worker_share(host: HostConfig) -> SshWorkerShare:
    """``workers`` (default: one per core, at most 4) sharing ``cores`` and ``gpus`` evenly."""
    workers = max(1, host.workers or min(host.cores or 1, 4))
    return SshWorkerShare(workers, max(1, (host.cores or workers) // workers), host.gpus // workers)


def ssh_step_problem(host: HostConfig, step: Step) -> str | None:
    r = step.resources
    share = ssh_worker_share(host)
    if r.cpus > share.cpus or r.gpus > share.gpus or r.mpi_ranks > 1:
        return (f"step '{step.name}' asks for {r.cpus} CPU(s), {r.gpus} GPU(s), {r.mpi_ranks} rank(s); each of the "
                f"{share.workers} worker(s) of SSH host {host.name} holds {share.cpus} CPU(s) and {share.gpus} "
                "GPU(s) and runs one rank (hosts file keys cores, gpus, workers)")
    if r.memory_mb is not None and host.memory_mb is not None and r.memory_mb > host.memory_mb:
        return (f"step '{step.name}' asks for {r.memory_mb} MB of memory; SSH host {host.name} has "
                f"{host.memory_mb} MB (hosts file key memory)")
    return None


def check_ssh_steps(host: HostConfig, steps: Iterable[Step]) -> None:
    _refuse([p for p in (ssh_step_problem(host, step) for step in steps) if p])


# -- queue hosts --

def pilots_enabled(host: HostConfig) -> bool:
    """Pilots run on a queue host unless it is reached through its login node or turns them off."""
    return host.ssh is None and host.pilot.enabled


def fits_pilot(host: HostConfig, step: Step) -> bool:
    """Whether ``step`` fits one pilot worker's share (cores, GPUs, memory, one rank, wall time)."""
    from orchestrator.hosts.queues.pilots import worker_resources

    pilot = host.pilot
    share = worker_resources(pilot.cores, pilot.gpus, pilot.processes)
    r = step.resources
    return pilots_enabled(host) and (
        r.mpi_ranks <= 1 and r.cpus <= share["cpus"] and r.gpus <= share.get("gpus", 0)
        and (r.memory_mb is None or r.memory_mb <= pilot.memory_mb // pilot.processes)
        and (r.walltime_s is None or r.walltime_s <= pilot.walltime_s))


def check_queue_steps(host: HostConfig, steps: Iterable[Step]) -> None:
    """Every step fits a pilot, or the job script its queue would take can be written (the
    backend checks the step's resources against the queue's limits there)."""
    from orchestrator.hosts.queues import backend_for
    from orchestrator.hosts.queues.base import JobRequest
    from orchestrator.hosts.queues.jobscript import render_job_script

    if host.ssh is not None and not host.shared_fs:
        raise DoesNotFitHost(f"host {host.name!r} is reached over SSH and does not share the project's files: "
                             "batch jobs there need shared_fs = true (with path_map where paths differ); "
                             "staging to queue hosts is not supported")
    backend = backend_for(host)
    problems = []
    for step in steps:
        if fits_pilot(host, step):
            continue
        probe = JobRequest(name=f"check-{step.name}", command=["true"], job_dir="/tmp/orch-check",
                           resources=step.resources)
        try:
            render_job_script(backend, probe)
        except HostError as exc:
            problems.append(f"step '{step.name}' fits neither a pilot of host {host.name} nor its queue: {exc}")
    _refuse(problems)
