"""em-orchestrator-relion: protocols that run RELION 3.1's programs, conversions behind the scenes.

Installed with ``pip install -e plugins/relion``; registers the plugin ``relion`` (entry point
group ``orchestrator.plugins``). The package is ``relion_plugin`` so that it never shadows
anything called ``relion``.
"""

__version__ = "0.1.0"
