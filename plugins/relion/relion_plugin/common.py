"""What the RELION protocols share: the form fields for inputs and parallelism, and citations."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.protocol import (
    IntParam,
    OutputRef,
    Param,
    ParamValidationError,
    PointerParam,
    Protocol,
    ProtocolError,
    ResolvedParams,
    Resources,
    StrParam,
)
from relion_plugin.command import MPIRUN_PROGRAM

MOVED_TO_HOSTS_FILE = {
    "mpi_command": "the MPI launcher is chosen by the host's owner now, not by a run: set it in the hosts "
    f'file, [hosts.NAME.programs] {MPIRUN_PROGRAM} = ["mpirun", "--oversubscribe"] (or ["srun", "-n", "{{ranks}}"])',
}
"""Params that were run params and moved to the hosts file, with what to do instead."""

RELION_CITATION = """@article{Zivanov2018,
  author = {Zivanov, Jasenko and Nakane, Takanori and Forsberg, Bj{\\"o}rn O and Kimanius, Dari and
            Hagen, Wim JH and Lindahl, Erik and Scheres, Sjors HW},
  title = {New tools for automated high-resolution cryo-EM structure determination in RELION-3},
  journal = {eLife}, volume = {7}, pages = {e42166}, year = {2018}, doi = {10.7554/eLife.42166}
}"""

BAYESIAN_CITATION = """@article{Scheres2012,
  author = {Scheres, Sjors HW},
  title = {RELION: implementation of a Bayesian approach to cryo-EM structure determination},
  journal = {Journal of Structural Biology}, volume = {180}, number = {3}, pages = {519--530},
  year = {2012}, doi = {10.1016/j.jsb.2012.09.006}
}"""


def particles_param(help_text: str = "Particle set to process, e.g. extract.particles or 12.particles.") -> Param:
    return PointerParam("particles", type_name="SetOfParticles", label="Input particles", help=help_text)


class ParallelProtocol(Protocol):
    """Base of the protocols that run RELION's MPI programs.

    A run that still sets a param that moved to the hosts file (``mpi_command``) is refused
    with a message saying where it went: a workflow file someone shares must not choose which
    program its importer runs. The empty value, the old default, is dropped quietly, so runs
    recorded before the move can still be restarted.
    """

    @classmethod
    def validate(cls, raw_params: Mapping[str, Any], *, base_dir: Path | None = None) -> ResolvedParams:
        raw = dict(raw_params)
        problems = []
        for name, instead in MOVED_TO_HOSTS_FILE.items():
            if name in raw and raw.pop(name) not in ("", None):
                problems.append(f"param '{name}': moved to the hosts file; {instead}")
        if problems:
            raise ParamValidationError(cls.name, problems)
        return super().validate(raw, base_dir=base_dir)


def parallel_params(mpi_default: int = 1, mpi_min: int = 1, *, threads: bool = True, gpus: bool = True) -> list[Param]:
    """MPI ranks, threads per rank, GPUs and extra RELION options (the MPI launcher is the host's)."""
    params: list[Param] = [
        IntParam(
            "mpi",
            default=mpi_default,
            min=mpi_min,
            label="MPI ranks",
            help="MPI processes (relion_*_mpi when > 1, started with the host's mpirun program from "
            "its hosts file); the step reserves mpi x threads cores.",
        ),
    ]
    if threads:
        params.append(IntParam("threads", default=1, min=1, label="Threads per rank", help="RELION's --j."))
    if gpus:
        params.append(
            IntParam(
                "gpus",
                default=0,
                min=0,
                label="GPUs",
                help="GPUs for the step; given to RELION as --gpu in its own syntax (needs a RELION built with CUDA).",
            )
        )
    params += [
        StrParam(
            "extra_args",
            default="",
            label="Extra RELION arguments",
            help="Appended to the RELION command line as typed (split like a shell would).",
        ),
    ]
    return params


def parallel_resources(p: ResolvedParams) -> Resources:
    """The step's reservation: ``threads`` cores per rank, ``mpi`` ranks, ``gpus`` GPUs."""
    gpus = p["gpus"] if "gpus" in p else 0
    return Resources(cpus=p["threads"] if "threads" in p else 1, gpus=gpus, mpi_ranks=p.mpi)


def parallel_args(p: ResolvedParams) -> dict[str, Any]:
    """The step arguments that repeat the reservation on the command line."""
    args = {"mpi": p.mpi, "extra_args": p.extra_args}
    if "threads" in p:
        args["threads"] = p.threads
    return args


def input_set(p: ResolvedParams, name: str = "particles") -> tuple[int, str]:
    """(set id, producing run's directory) of a SetOfParticles input."""
    ref: OutputRef = p.input(name)
    value = ref.value if isinstance(ref.value, dict) else {}
    if not isinstance(value.get("set_id"), int):
        raise ProtocolError(f"input '{name}' ({ref}) carries no set id; is it a SetOfParticles output?")
    return value["set_id"], str(ref.run_dir)


def input_volume(p: ResolvedParams, name: str) -> OutputRef | None:
    """The bound Volume input ``name``, or None when the optional pointer was not given."""
    return p.input(name) if p.is_active(name) and p[name] is not None else None
