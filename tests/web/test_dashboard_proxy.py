"""The dashboards' relay (``/p/{project}/dashboard/{host}/...``) is no open proxy: it reaches only
the loopback port the project's running scheduler recorded for that host, passes no cookie or
CSRF token on, and keeps redirects on this server. Through Starlette's test client against a
small HTTP server standing in for a dask dashboard; the scheduler's record is written by
:mod:`orchestrator.scheduler.live_hosts`, as the scheduler writes it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator.project import Project
from orchestrator.scheduler.live_hosts import LIVE_FILE, LiveHost, LiveHostsRecorder, read_live_hosts, write_live_hosts
from orchestrator.scheduler.lock import SchedulerLock
from orchestrator.web.app import create_app
from orchestrator.web.settings import WebSettings


class FakeDashboard(BaseHTTPRequestHandler):
    """Answers every GET with what it was asked (path and headers); ``/go-*`` redirect."""

    seen: list[dict[str, Any]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        FakeDashboard.seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
        if self.path.startswith("/go-away"):
            self.send_response(302)
            self.send_header("Location", "http://evil.example/steal")
            self.end_headers()
            return
        if self.path.startswith("/go-home"):
            self.send_response(302)
            self.send_header("Location", "/status")
            self.end_headers()
            return
        body = f"dashboard page {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Set-Cookie", "bokeh=1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def dashboard() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeDashboard)
    FakeDashboard.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


@pytest.fixture
def scheduler_lock(project: Project) -> Iterator[SchedulerLock]:
    """This process holds the project's scheduler lock, as a running scheduler does."""
    lock = SchedulerLock(project)
    assert lock.acquire()
    yield lock
    lock.release()


def logged_in(project: Project) -> TestClient:
    settings = WebSettings(projects=(project.path,), token="the-token", secret="s" * 32)
    web = TestClient(create_app(settings), base_url="http://127.0.0.1:8765", follow_redirects=False)
    assert web.get("/login?token=the-token").status_code == 303
    return web


def test_only_the_recorded_loopback_port_is_reached(project: Project, dashboard: int,
                                                    scheduler_lock: SchedulerLock) -> None:
    write_live_hosts(project.path, [LiveHost("local", dashboard, None, 2)])
    web = logged_in(project)
    answer = web.get("/p/proj/dashboard/local/info/main/workers.html?x=1", headers={"X-CSRF-Token": "secret"})
    assert answer.status_code == 200 and answer.text == "dashboard page /info/main/workers.html?x=1"
    asked = FakeDashboard.seen[-1]["headers"]
    assert asked["host"] == f"127.0.0.1:{dashboard}"
    assert "cookie" not in asked and "x-csrf-token" not in asked  # the session stays here
    assert "set-cookie" not in answer.headers
    assert "connect-src 'self'" in answer.headers["content-security-policy"]

    # an address in the request is only a path on the recorded port
    web.get("/p/proj/dashboard/local/http://evil.example:80/x")
    assert FakeDashboard.seen[-1]["path"] == "/http://evil.example:80/x"
    # no header can be smuggled through the path or the query
    asked_before = len(FakeDashboard.seen)
    web.get("/p/proj/dashboard/local/a%0d%0aX-Injected:%201")
    web.get("/p/proj/dashboard/local/b%20HTTP/1.0%0d%0aX-Injected:%201%0d%0a%0d%0a")
    assert web.get("/p/proj/dashboard/local/c?q=%0d%0aX-Injected:%201").status_code == 200
    for seen in FakeDashboard.seen[asked_before:]:
        assert "x-injected" not in seen["headers"] and "\r" not in seen["path"] and " " not in seen["path"]
    # a host the scheduler recorded nothing for, or no host at all
    assert web.get("/p/proj/dashboard/evil.example/").status_code == 404
    assert web.get(f"/p/proj/dashboard/127.0.0.1:{dashboard}/").status_code == 404
    assert web.get("/p/other/dashboard/local/").status_code == 404


def test_redirects_stay_on_this_server(project: Project, dashboard: int, scheduler_lock: SchedulerLock) -> None:
    write_live_hosts(project.path, [LiveHost("local", dashboard, None, 2)])
    web = logged_in(project)
    assert web.get("/p/proj/dashboard/local/go-home").headers["location"] == "/p/proj/dashboard/local/status"
    assert web.get("/p/proj/dashboard/local/go-away").headers["location"] == "/p/proj/dashboard/local/"
    assert web.get("/p/proj/dashboard/local").headers["location"] == "/p/proj/dashboard/local/"


def test_a_record_left_by_a_scheduler_that_is_gone_is_not_followed(project: Project, dashboard: int) -> None:
    write_live_hosts(project.path, [LiveHost("local", dashboard, None, 2)])  # no scheduler holds the lock
    web = logged_in(project)
    answer = web.get("/p/proj/dashboard/local/")
    assert answer.status_code == 404 and "not running" in answer.text
    assert FakeDashboard.seen == []


def test_the_relay_asks_for_a_login_and_refuses_other_host_names(project: Project, dashboard: int,
                                                                 scheduler_lock: SchedulerLock) -> None:
    write_live_hosts(project.path, [LiveHost("local", dashboard, None, 2)])
    settings = WebSettings(projects=(project.path,), token="the-token", secret="s" * 32)
    anonymous = TestClient(create_app(settings), base_url="http://127.0.0.1:8765", follow_redirects=False)
    assert anonymous.get("/p/proj/dashboard/local/").status_code == 303
    web = logged_in(project)
    assert web.get("/p/proj/dashboard/local/", headers={"Host": "evil.example"}).status_code == 400
    assert FakeDashboard.seen == []


def test_a_dashboard_that_is_gone_is_a_bad_gateway(project: Project, scheduler_lock: SchedulerLock) -> None:
    write_live_hosts(project.path, [LiveHost("local", 1, None, 0)])  # nothing listens on port 1
    answer = logged_in(project).get("/p/proj/dashboard/local/")
    assert answer.status_code == 502 and "does not answer" in answer.text


class _Cluster:
    def __init__(self, port: int, workers: int) -> None:
        self.scheduler_info = {"services": {"dashboard": port}, "workers": {f"w{i}": {} for i in range(workers)}}


class _LocalExecutor:
    def __init__(self, cluster: _Cluster | None) -> None:
        self._cluster = cluster

    @property
    def client(self) -> Any:
        raise AssertionError("reading what an executor holds must not start its cluster")


class _QueueExecutor:
    pilots = True

    def __init__(self, cluster: _Cluster) -> None:
        self.cluster = cluster

    def describe(self) -> dict[str, Any]:
        return {"pilots": 3}


def test_the_scheduler_records_dashboards_and_pilots_when_they_change(tmp_path: Path) -> None:
    recorder = LiveHostsRecorder(tmp_path)
    local = _LocalExecutor(None)
    recorder.note({"local": local})
    live = read_live_hosts(tmp_path)
    assert live is not None and live.hosts["local"] == LiveHost("local", None, None, None)
    local._cluster = _Cluster(40123, 2)
    recorder.note({"local": local, "cluster": _QueueExecutor(_Cluster(40124, 1))})
    live = read_live_hosts(tmp_path)
    assert live is not None
    assert live.hosts == {"local": LiveHost("local", 40123, None, 2), "cluster": LiveHost("cluster", 40124, 3, 1)}
    stamp = (tmp_path / LIVE_FILE).stat().st_mtime_ns
    (tmp_path / LIVE_FILE).chmod(0o600)
    recorder.note({"local": local, "cluster": _QueueExecutor(_Cluster(40124, 1))})
    assert (tmp_path / LIVE_FILE).stat().st_mtime_ns == stamp  # unchanged: not written again
    assert (tmp_path / LIVE_FILE).stat().st_mode & 0o077 == 0
