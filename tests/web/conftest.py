"""Fixtures of the browser tests: a real ``orch web`` server, Debian's chromium through Playwright,
pages that may not reach anything but 127.0.0.1, screenshots, and projects to serve.

- ``web_server``: ``orch web --all`` as a subprocess (one per session) with its own HOME,
  XDG_CONFIG_HOME and ORCH_HOME (the projects registry); ``start_web_server(*args)`` starts
  another (``orch web PROJECT``), stopped after the test. Each gives its URL and the token
  parsed from the login link it printed.
- ``orch``: the ``orch`` command with the server's environment (projects it creates are on the
  server's list); ``project_factory(name)`` creates one, and stops its scheduler afterwards.
- ``browser``: chromium headless from /usr/bin/chromium (outside CI a missing chromium or
  playwright skips, in CI it fails: ``infra.services.require``).
- ``page``: a fresh browser context and page on the server; every request it makes is recorded,
  and the test fails if one went to a host other than 127.0.0.1 / localhost. ``logged_in`` is
  that page after opening the printed login link. ``shot(label)`` saves a screenshot named
  after the test into ``$ORCH_TEST_ARTIFACTS`` (default ``tests/web/artifacts/``); every test
  leaves a last one (``<test>-end.png``), failed or not.

Adding a test of another page: take ``logged_in`` (and ``project_factory`` for its data), go
to the page, assert, ``shot("what")``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from infra.services import ServiceUnavailable, require, service_env
from web_support import RequestLog, WebEnv, WebProject, WebServer, start_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("ORCH_TEST_ARTIFACTS") or Path(__file__).with_name("artifacts"))
#: services whose client environment the server and the commands get when they run (SLURM_CONF...)
CLIENT_SERVICES = ("slurm", "sge", "sshd")


@pytest.fixture(scope="session")
def web_env(tmp_path_factory: pytest.TempPathFactory) -> WebEnv:
    root = tmp_path_factory.mktemp("web")
    home = root / "home"
    (home / ".config").mkdir(parents=True)
    (root / "projects").mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "ORCH_HOME": str(root / "orch-home"), "PYTHONUNBUFFERED": "1"}
    env.pop("ORCH_HOSTS", None)
    for name in CLIENT_SERVICES:  # a queue host's jobs are asked with the service's own commands
        try:
            env.update(service_env(name))
        except ServiceUnavailable:
            pass  # the tests that need it say so themselves (require_service)
    return WebEnv(env, root)


@pytest.fixture(scope="session")
def web_server(web_env: WebEnv) -> Iterator[WebServer]:
    """``orch web --all``: every project of the session's list, created ones included."""
    server = start_server(["--all"], web_env.env, web_env.root)
    yield server
    server.stop()


@pytest.fixture
def start_web_server(web_env: WebEnv) -> Iterator[Callable[..., WebServer]]:
    """Start another server (``start_web_server("myproject")``); stopped after the test."""
    servers: list[WebServer] = []

    def start(*args: str) -> WebServer:
        server = start_server(list(args), web_env.env, web_env.root)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def orch(web_env: WebEnv) -> Callable[..., str]:
    """Run ``orch ARGS`` with the session's environment; its stdout (a failure raises with its output)."""

    def run(*args: str, timeout: float = 120) -> str:
        done = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                              env=web_env.env, cwd=web_env.root, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False)
        if done.returncode != 0:
            raise AssertionError(f"orch {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    return run


@pytest.fixture(scope="session")
def project_factory(web_env: WebEnv, orch: Callable[..., str]) -> Iterator[Callable[[str], WebProject]]:
    """``project_factory(name)``: a new project on the session's list (served by ``web_server``);
    its scheduler, if one was started, is stopped at the end of the session."""
    made: list[WebProject] = []

    def create(name: str) -> WebProject:
        folder = web_env.projects_dir / name
        orch("project", "create", str(folder))
        project = WebProject(name, folder)
        made.append(project)
        return project

    yield create
    from orchestrator.app.scheduler import stop_scheduler

    for project in made:
        if (project.path / "project.json").exists():
            stop_scheduler(project.path, timeout_s=20)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require(sync_playwright is not None, "playwright is not installed: pip install -e '.[test]'")
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing: install it with `bash tests/infra/system-deps.sh browser`")
    assert sync_playwright is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


def _test_name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[..., Path]:
    """``shot(label)`` (or ``shot(label, page=other)``): a full-page screenshot, ``<test>-<label>.png``."""

    def take(label: str, page: Any = None) -> Path:
        target = page if page is not None else request.getfixturevalue("page")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{_test_name(request)}-{label}.png"
        target.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def requests_made() -> RequestLog:
    return RequestLog()


@pytest.fixture
def page(browser: Any, web_server: WebServer, requests_made: RequestLog,
         request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page of a fresh context (no cookies) on ``web_server``; no request may leave 127.0.0.1."""
    context = browser.new_context(base_url=web_server.url, viewport={"width": 1400, "height": 900})
    context.on("request", lambda req: requests_made.add(req.url))
    context.on("requestfailed", lambda req: requests_made.failed(req.url, req.failure))
    context.on("page", lambda new: new.on("websocket", lambda ws: requests_made.add(ws.url)))
    page = context.new_page()
    page.on("websocket", lambda ws: requests_made.add(ws.url))
    page.set_default_timeout(15_000)
    yield page
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{_test_name(request)}-end.png"), full_page=True)
    finally:
        context.close()
    foreign = requests_made.foreign()
    assert not foreign, f"the page made requests off 127.0.0.1: {foreign}"


@pytest.fixture
def logged_in(page: Any, web_server: WebServer) -> Any:
    """The page after opening the login link the server printed (it lands on the projects page)."""
    page.goto(web_server.login_url)
    assert urlsplit(page.url).path == "/", page.url
    return page
