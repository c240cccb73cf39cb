"""The ``relion`` plugin object that the ``orchestrator.plugins`` entry point loads."""

from __future__ import annotations

from orchestrator.plugins import ExternalProgram, Plugin
from relion_plugin import __version__
from relion_plugin.common import BAYESIAN_CITATION, RELION_CITATION
from relion_plugin.protocols_maps import PROTOCOLS as MAP_PROTOCOLS
from relion_plugin.protocols_preprocess import PROTOCOLS as PREPROCESS_PROTOCOLS
from relion_plugin.protocols_refine import PROTOCOLS as REFINE_PROTOCOLS

_HOW = "apt-get install relion openmpi-bin (Debian/Ubuntu), or build RELION 3.1 and put its bin/ on PATH"


def _program(name: str) -> ExternalProgram:
    return ExternalProgram(name, how_to_get=_HOW, version_command=[name, "--version"])


plugin = Plugin(
    name="relion",
    version=__version__,
    protocols=[*PREPROCESS_PROTOCOLS, *REFINE_PROTOCOLS, *MAP_PROTOCOLS],
    citations=[RELION_CITATION, BAYESIAN_CITATION],
    programs=[
        _program("relion_refine"),
        _program("relion_refine_mpi"),
        _program("relion_preprocess"),
        _program("relion_reconstruct"),
        _program("relion_postprocess"),
        _program("relion_mask_create"),
        _program("relion_image_handler"),
        ExternalProgram(
            "mpirun",
            how_to_get="apt-get install openmpi-bin (any MPI whose launcher takes -np N)",
            version_command=["mpirun", "--version"],
        ),
    ],
    description="RELION 3.1 through the orchestrator: preprocess, 2D/3D classification, auto-refine, "
    "reconstruct, postprocess, import of RELION particle STAR files.",
)
