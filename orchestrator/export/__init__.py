"""Portable records of what a project did, for other tools and archives.

* :mod:`.emdb`: what an EMDB deposition asks for about one map: the map, its two half maps,
  the mask, the FSC curve as EMDB's XML, an image, and the processing behind it;
* :mod:`.crate`: a Workflow Run RO-Crate of a project's runs: the workflow, one action per
  run with its inputs, outputs and their SHA-256, and the runs' provenance records.

Both write into a folder that is new or empty, and never replace a file that is there
(:mod:`.destination`). The modules are imported by the commands that use them: matplotlib
and rocrate load only for an export.
"""

from orchestrator.export.errors import ExportError

__all__ = ["ExportError"]
