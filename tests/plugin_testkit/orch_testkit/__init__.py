"""orch-testkit: small protocols that exercise the scheduler, for tests and benchmarks.

Installed with ``pip install -e tests/plugin_testkit``; registers the plugin ``testkit``
(and ``testkit_broken``, which fails to import on purpose).
"""

from orch_testkit.protocols import PROTOCOLS
from orch_testkit.trust import TRUST_PROTOCOLS
from orchestrator.plugins import ExternalProgram, Plugin

__version__ = "0.1.0"

plugin = Plugin(
    name="testkit",
    version=__version__,
    protocols=[*PROTOCOLS, *TRUST_PROTOCOLS],
    # a program every host has, so that provenance asks its version wherever a step runs
    programs=[ExternalProgram("python3", how_to_get="the Python the orchestrator runs on",
                              version_command=["python3", "--version"])],
    description=("Test and benchmark protocols: noop, sleep, fail, produce, fanout, chain, hold, particles, "
                 "select; ledger, spawn, partial, badoutputs."),
)
