"""The Python API: the application layer (:mod:`orchestrator.app`), in one namespace.

Everything the ``orch`` command does is a function here, taking a project (a folder, a
registered name, a :class:`~orchestrator.project.Project`, or an :class:`OpenProject` handle)
and returning records with ``to_dict()``; errors are :class:`~orchestrator.errors.OrchestratorError`
with a message that names what is at fault. The CLI and the web server call the same functions::

    from orchestrator import api

    if __name__ == "__main__":          # the local cluster starts worker processes (spawn)
        project = api.project("~/em/test1", create=True)
        run = api.submit_run(project, "testkit.fanout", {"count": 8})   # the scheduler starts detached
        run = api.wait_for_run(project, run.id, on_progress=lambda runs: print(runs[0].steps.to_dict()))
        print(run.state, api.list_outputs(project, run.id))

``project``, ``run`` and ``outputs`` are the short forms of the first API (open or create,
submit and wait, outputs by name).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.app.access import OpenProject, ProjectRef, ProjectTarget, load_project, open_project
from orchestrator.app.errors import SchedulerBusyError, http_status
from orchestrator.app.events import EventInfo, follow_events, list_events
from orchestrator.app.exports import CrateExport, EmdbExport, export_crate, export_emdb
from orchestrator.app.hosts import HostCheck, HostList, HostSummary, check_host, list_hosts, show_host
from orchestrator.app.logs import LogChunk, RunEnded, RunLogs, StepLog, follow_logs, read_logs
from orchestrator.app.outputs import get_output, list_outputs
from orchestrator.app.plugins import (
    PluginDetail,
    PluginInfo,
    ProtocolInfo,
    describe_protocol,
    list_plugins,
    show_plugin,
)
from orchestrator.app.projects import (
    CreatedProject,
    ProjectDeletion,
    ProjectEntry,
    ProjectInfo,
    create_project,
    delete_project,
    find_project,
    list_projects,
    project_info,
)
from orchestrator.app.provenance import output_lineage, run_provenance
from orchestrator.app.queue import QueueReport, queue_jobs
from orchestrator.app.records import OutputInfo, RunInfo, StepCounts, StepInfo
from orchestrator.app.replay import ReplayReport, compare, replay_project
from orchestrator.app.runs import (
    CancelOutcome,
    RunProgress,
    cancel_run,
    outcome,
    restart_run,
    submit_run,
    submit_workflow,
    wait_for_run,
    wait_for_runs,
)
from orchestrator.app.scheduler import (
    SchedulerState,
    scheduler_state,
    serve_scheduler,
    start_scheduler,
    stop_scheduler,
)
from orchestrator.app.sets import SetDetail, SetInfo, SetPage, count_items, describe_set, list_sets, query_set
from orchestrator.app.status import (
    ProjectStatus,
    RunDetail,
    RunStatus,
    RunSummary,
    project_status,
    run_info,
    run_status,
)
from orchestrator.app.transfers import TransferReport, transfer_status
from orchestrator.app.workflows import ImportOutcome, WorkflowPlan, export_workflow, import_workflow, read_workflow
from orchestrator.errors import NotFoundError, OrchestratorError, UsageError
from orchestrator.project import Project
from orchestrator.provenance.lineage import LineageNode

__all__ = [
    "CancelOutcome", "CreatedProject", "ImportOutcome", "ReplayReport", "WorkflowPlan", "compare", "export_workflow",
    "import_workflow", "read_workflow", "replay_project", "CrateExport", "EmdbExport", "export_crate", "export_emdb",
    "EventInfo", "HostCheck", "HostList", "HostSummary", "LineageNode", "LogChunk",
    "NotFoundError", "OpenProject", "OrchestratorError", "OutputInfo", "PluginDetail", "PluginInfo", "Project",
    "ProjectDeletion", "ProjectEntry", "ProjectInfo", "ProjectRef", "ProjectStatus", "ProjectTarget", "ProtocolInfo",
    "QueueReport", "RunDetail", "RunEnded", "RunInfo", "RunLogs", "RunProgress", "RunStatus", "RunSummary",
    "SchedulerBusyError", "SchedulerState", "SetDetail", "SetInfo", "SetPage", "StepCounts", "StepInfo", "StepLog",
    "TransferReport", "UsageError", "cancel_run", "check_host", "count_items", "create_project", "delete_project",
    "describe_protocol", "describe_set", "find_project", "follow_events", "follow_logs", "get_output", "http_status",
    "list_events", "list_hosts", "list_outputs", "list_plugins", "list_projects", "list_sets", "load_project",
    "open_project", "outcome", "output_lineage", "outputs", "project", "project_info", "project_status", "query_set",
    "queue_jobs", "read_logs", "restart_run", "run", "run_info", "run_provenance", "run_status", "scheduler_state",
    "serve_scheduler", "show_host", "show_plugin", "start_scheduler", "stop_scheduler", "submit_run",
    "submit_workflow", "transfer_status", "wait_for_run", "wait_for_runs",
]


def project(ref: str | Path, create: bool = False) -> Project:
    """A project by folder or registered name; ``create=True`` makes it (at that folder) when missing."""
    try:
        return load_project(ref)
    except NotFoundError:
        if not create:
            raise
        return load_project(create_project(ref).path)


def run(project: ProjectTarget, protocol: str, params: Mapping[str, Any] | None = None, *, name: str | None = None,
        wait: bool = True, timeout_s: float | None = None) -> RunInfo:
    """Queue a run (its scheduler starts detached if needed) and, by default, wait for its end."""
    record = submit_run(project, protocol, params, name=name)
    return wait_for_run(project, record.id, timeout_s) if wait else record


def outputs(project: ProjectTarget, run_ref: int | str) -> dict[str, OutputInfo]:
    """The registered outputs of a run, by name."""
    return {output.name: output for output in list_outputs(project, run_ref)}
