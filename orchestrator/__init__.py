"""em-orchestrator: a distributed job orchestrator for cryo-EM image processing.

The package is organised by concern (see DESIGN.md): ``objects`` (data model),
``store`` (the project store), ``protocol`` (protocol API), ``scheduler``, ``hosts``,
``transfer``, ``em`` (formats) and ``cli`` (the ``orch`` command).
"""

__version__ = "0.1.0"
