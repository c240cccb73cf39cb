"""Native cryo-EM processing for em-orchestrator: numerical kernels and (later) protocols."""

__version__ = "0.1.0"
