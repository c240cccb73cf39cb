"""Import of Scipion workflow files (``Project.exportProtocols``) and templates into our workflow format.

Public API::

    is_scipion_workflow(document) -> bool
    load_scipion_file(path) -> ScipionFile(document, description)    # also .json.template files
    convert_scipion_workflow(document, source, registry, description=...) -> ScipionConversion

The mapping table is :mod:`orchestrator.interop.scipion.mapping`.
"""

from orchestrator.interop.scipion.convert import OmittedProtocol, ScipionConversion, convert_scipion_workflow
from orchestrator.interop.scipion.document import (
    ScipionFile,
    decode_scipion_text,
    is_scipion_workflow,
    load_scipion_file,
)

__all__ = [
    "OmittedProtocol",
    "ScipionConversion",
    "ScipionFile",
    "convert_scipion_workflow",
    "decode_scipion_text",
    "is_scipion_workflow",
    "load_scipion_file",
]
