"""A deliberately broken plugin entry point (``testkit_broken``).

Loading it raises ImportError, as a plugin with a missing dependency would, so that tests
can check that ``orch plugins`` reports it and still loads every other plugin.
"""

raise ImportError("orch_testkit.broken is broken on purpose (its dependency 'not_installed_lib' is missing)")
