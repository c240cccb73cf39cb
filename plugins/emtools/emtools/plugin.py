"""The ``emtools`` plugin object that the ``orchestrator.plugins`` entry point loads."""

from emtools import __version__
from emtools.protocols import PROTOCOLS
from orchestrator.plugins import Plugin

plugin = Plugin(
    name="emtools",
    version=__version__,
    protocols=list(PROTOCOLS),
    description="Native numpy single-particle pipeline: simulate, import, motion correction, CTF, picking, "
                "extraction, 2D classification, reconstruction, 3D refinement, FSC. CuPy on GPU steps.",
)
