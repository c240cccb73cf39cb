"""The project page (Scipion's project window): runs as a table and as a flowchart, live.

The page loads the graph once (``graph.json``) and then follows ``/live``, a server-sent event
stream: the server looks at the newest event id twice a second (one indexed query) and only
when it moved reads the graph again and sends the runs that changed. The browser never polls.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from orchestrator.app.graph import RunGraph, last_event_id, run_graph
from orchestrator.web.pages.served import project_path
from orchestrator.web.render import page

LIVE_POLL_S = 0.5
KEEPALIVE_S = 15.0


def node_json(graph: RunGraph) -> dict[int, dict[str, Any]]:
    """What the page draws of each run, by run id."""
    nodes = {}
    for node in graph.nodes:
        run = node.run
        nodes[run.id] = {"id": run.id, "name": run.name, "protocol": run.protocol, "state": run.state,
                         "host": run.host, "duration_s": run.duration_s, "error": run.error,
                         "steps": dict(run.step_counts.by_state),
                         "outputs": [{"name": name, "type": kind} for name, kind in node.outputs]}
    return nodes


def graph_json(graph: RunGraph) -> dict[str, Any]:
    return {"project": graph.project, "scheduler": graph.scheduler.to_dict(), "last_event": graph.last_event,
            "runs": list(node_json(graph).values()),
            "edges": [edge.to_dict() for edge in graph.edges]}


async def project_page(request: Request) -> Response:
    folder = project_path(request)
    graph = await run_in_threadpool(run_graph, folder)
    return page(request, "project.html", project=graph.project, graph=graph,
                graph_data=json.dumps(graph_json(graph)))


async def graph_data(request: Request) -> Response:
    graph = await run_in_threadpool(run_graph, project_path(request))
    return JSONResponse(graph_json(graph))


async def live(request: Request) -> Response:
    folder = project_path(request)
    since = int(request.query_params.get("since", "0") or 0)
    return StreamingResponse(_changes(request, folder, since), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _changes(request: Request, folder: Any, since: int) -> AsyncIterator[str]:
    """``event: runs`` with the runs that changed (and ``structure: true`` when runs or links
    were added or removed: the page lays the chart out again)."""
    previous: dict[int, dict[str, Any]] | None = None
    edges: list[dict[str, Any]] | None = None
    last = since
    quiet = 0.0
    while not await request.is_disconnected():
        newest = await run_in_threadpool(last_event_id, folder)
        if newest != last or previous is None:
            graph = await run_in_threadpool(run_graph, folder)
            nodes = node_json(graph)
            new_edges = [edge.to_dict() for edge in graph.edges]
            if previous is not None or newest != since:
                changed = [node for run_id, node in nodes.items() if (previous or {}).get(run_id) != node]
                structure = previous is not None and (set(nodes) != set(previous) or new_edges != edges)
                if changed or structure or previous is None:
                    payload = {"last_event": graph.last_event, "runs": changed,
                               "removed": sorted(set(previous or {}) - set(nodes)), "structure": structure,
                               "scheduler": graph.scheduler.to_dict()}
                    yield f"event: runs\ndata: {json.dumps(payload)}\n\n"
                    quiet = 0.0
            previous, edges, last = nodes, new_edges, newest
        await asyncio.sleep(LIVE_POLL_S)
        quiet += LIVE_POLL_S
        if quiet >= KEEPALIVE_S:
            yield ": keep-alive\n\n"
            quiet = 0.0


ROUTES = [
    Route("/p/{project}", project_page),
    Route("/p/{project}/graph.json", graph_data),
    Route("/p/{project}/live", live),
]
