"""The hosts and queues page: every configured host with its state (reachable, pilots, GPUs used
and free), each served project's batch jobs as ``orch queue`` shows them, and the hosts' dask
dashboards, reached through this server.

The dashboards listen on 127.0.0.1 of the scheduler's machine, on ports only the scheduler
knows: it records them (:mod:`orchestrator.scheduler.live_hosts`) and ``/p/{project}/dashboard/
{host}/...`` relays a request to the port recorded for that project and host, and to nothing
else: the address never comes from the request, so this is no open proxy. Each response gets a
Content-Security-Policy that keeps the page from fetching anything off this server (dask's
pages link a stylesheet on a CDN).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from orchestrator.app.hosts import check_host
from orchestrator.app.queue import queue_jobs
from orchestrator.app.web_hosts import DASHBOARD_HOST, DashboardAddress, dashboard_address, hosts_overview
from orchestrator.web.pages.served import project_path, served_projects
from orchestrator.web.render import page

#: how long the queue fragment waits before asking the queues again (seconds)
QUEUE_REFRESH_S = 20
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
CHUNK = 64 * 1024
MAX_HEAD = 64 * 1024
#: request headers passed on to a dashboard; never the session cookie or the CSRF token
FORWARDED = ("accept", "accept-language", "accept-encoding", "if-none-match", "if-modified-since", "range")
#: response headers not passed back: hop by hop, cookies of the dashboard, lengths we re-frame
DROPPED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "set-cookie", "upgrade",
                     "proxy-authenticate", "strict-transport-security", "content-security-policy"})
DASHBOARD_CSP = ("default-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob:; connect-src 'self'; "
                 "frame-ancestors 'self'; base-uri 'self'; form-action 'self'")
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"


async def hosts_page(request: Request) -> Response:
    folders = served_projects(request.app.state.settings)
    overview = await run_in_threadpool(hosts_overview, list(folders.values()))
    return page(request, "hosts.html", overview=overview, projects=sorted(folders), refresh_s=QUEUE_REFRESH_S)


async def queue_fragment(request: Request) -> Response:
    folder = project_path(request)
    include_finished = request.query_params.get("all") == "1"
    report = await run_in_threadpool(lambda: queue_jobs(folder, include_finished=include_finished))
    return page(request, "hosts_queue.html", report=report, include_finished=include_finished,
                refresh_s=QUEUE_REFRESH_S, asked_at=datetime.now(UTC))


async def check(request: Request) -> Response:
    """Ask a host for real whether it can run steps (seconds: it runs commands there)."""
    form = await request.form()
    project = str(form.get("project") or "")
    folder = project_path(request, project) if project else None
    report = await run_in_threadpool(check_host, request.path_params["host"], folder)
    return page(request, "hosts_check.html", report=report)


async def dashboard_root(request: Request) -> Response:
    """``.../dashboard/HOST`` -> ``.../dashboard/HOST/``: the dashboard's relative links need the slash."""
    project_path(request)
    return RedirectResponse(f"{_prefix(request)}/", status_code=307)


async def dashboard(request: Request) -> Response:
    """Relay one GET to the host's dashboard, as recorded by the project's scheduler."""
    folder = project_path(request)
    address = await run_in_threadpool(dashboard_address, folder, request.path_params["host"])
    target = "/" + quote(request.path_params["path"], safe=_PATH_SAFE)
    query = request.scope.get("query_string", b"").decode("latin-1")
    if query:
        if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in query):
            raise HTTPException(400, "the query string holds characters a URL may not")
        target += "?" + query
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(DASHBOARD_HOST, address.port),
                                                CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError):
        raise HTTPException(502, f"the dask dashboard of host {address.host} (project {address.project}) does not "
                                 "answer; its scheduler may be stopping") from None
    try:
        head = _request_head(request, address, target)
        writer.write(head)
        await writer.drain()
        status, headers = await _response_head(reader, address)
    except BaseException:
        writer.close()
        raise
    prefix = _prefix(request)
    out = {}
    for name, value in headers:
        if name in DROPPED:
            continue
        if name == "location":
            value = _relocated(value, prefix, address)
        out[name] = value
    out.update({"content-security-policy": DASHBOARD_CSP, "x-content-type-options": "nosniff",
                "referrer-policy": "no-referrer"})
    return StreamingResponse(_body(reader, writer), status_code=status, headers=out)


def _prefix(request: Request) -> str:
    return (f"/p/{quote(request.path_params['project'], safe='')}/dashboard/"
            f"{quote(request.path_params['host'], safe='')}")


def _request_head(request: Request, address: DashboardAddress, target: str) -> bytes:
    # HTTP/1.0: the answer is never chunked and ends when the connection does
    lines = [f"{request.method} {target} HTTP/1.0", f"Host: {DASHBOARD_HOST}:{address.port}", "Connection: close"]
    for name in FORWARDED:
        value = request.headers.get(name)
        if value is not None and "\r" not in value and "\n" not in value:
            lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")


async def _response_head(reader: asyncio.StreamReader, address: DashboardAddress) -> tuple[int, list[tuple[str, str]]]:
    bad = HTTPException(502, f"the dask dashboard of host {address.host} answered something that is not HTTP")
    try:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
        raise bad from None
    if len(raw) > MAX_HEAD:
        raise bad
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise bad
    headers = []
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers.append((name.strip().lower(), value.strip()))
    return int(parts[1]), headers


def _relocated(location: str, prefix: str, address: DashboardAddress) -> str:
    """A redirect of the dashboard's, as a path under ``prefix`` (never to another site)."""
    parts = urlsplit(location)
    if parts.scheme or parts.netloc:
        if parts.hostname != DASHBOARD_HOST or parts.port != address.port:
            return prefix + "/"
        location = parts.path + (f"?{parts.query}" if parts.query else "")
    return prefix + location if location.startswith("/") else location


async def _body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(CHUNK), READ_TIMEOUT_S)
            if not chunk:
                return
            yield chunk
    finally:
        writer.close()


ROUTES = [
    Route("/hosts", hosts_page),
    Route("/hosts/queue/{project}", queue_fragment),
    Route("/hosts/{host}/check", check, methods=["POST"]),
    Route("/p/{project}/dashboard/{host}", dashboard_root),
    Route("/p/{project}/dashboard/{host}/{path:path}", dashboard),
]
