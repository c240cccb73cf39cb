"""Workflows: runs and their links as one JSON document, to create, export, import and replay.

:mod:`.document` reads and checks a workflow file and creates its runs; :mod:`.inputs` handles
the params it leaves open; :mod:`.export` writes a project's runs as one. The format is
versioned (``FORMAT_VERSION``) and described by ``workflow.schema.json`` beside this file.
"""

from orchestrator.workflow.document import (
    FORMAT_NAME,
    FORMAT_VERSION,
    READABLE_VERSIONS,
    Workflow,
    WorkflowError,
    WorkflowRun,
    check_workflow,
    load_workflow,
    parse_workflow,
    read_document,
    submit_workflow,
)
from orchestrator.workflow.inputs import InputError, OpenInput

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "READABLE_VERSIONS", "InputError", "OpenInput", "Workflow",
           "WorkflowError", "WorkflowRun", "check_workflow", "load_workflow", "parse_workflow", "read_document",
           "submit_workflow"]
