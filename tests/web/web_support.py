"""What the browser tests share besides fixtures: the ``orch web`` process, the session's
environment, the page's request log, waiting, and reading the project page's flowchart."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
LOGIN_LINK = re.compile(r"(http://[^\s/]+)/login\?token=(\S+)")
START_TIMEOUT_S = 30.0
#: the cytoscape instance of the project page (cytoscape keeps it on its container)
CHART = "document.getElementById('chart')._cyreg.cy"
NODES_JS = f"() => {CHART}.nodes().map(n => ({{id: n.id(), state: n.data('state'), label: n.data('label')}}))"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class WebServer:
    """One ``orch web`` process: ``url`` (``http://127.0.0.1:PORT``), the ``token`` it printed."""

    process: subprocess.Popen[str]
    url: str
    token: str
    output: list[str] = field(default_factory=list)

    @property
    def login_url(self) -> str:
        return f"{self.url}/login?token={self.token}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # what Ctrl-C does: uvicorn shuts down
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(args: list[str], env: dict[str, str], cwd: Path) -> WebServer:
    """Start ``orch web ARGS --port N``, read the login link it prints, wait until it answers."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "web", *args, "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               text=True, env=env, cwd=cwd)
    output: list[str] = []
    found = threading.Event()
    link: list[re.Match[str]] = []

    def drain() -> None:  # keep reading, or a chatty server would block on a full pipe
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            match = LOGIN_LINK.search(line)
            if match and not link:
                link.append(match)
                found.set()
        found.set()

    threading.Thread(target=drain, daemon=True).start()
    found.wait(START_TIMEOUT_S)
    if not link:
        process.kill()
        raise RuntimeError("orch web printed no login link:\n" + "\n".join(output))
    server = WebServer(process, link[0].group(1), link[0].group(2), output)
    # the link is printed before uvicorn listens
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{server.url}/login", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"orch web did not answer on {server.url}:\n" + "\n".join(output))
        time.sleep(0.05)


@dataclass(frozen=True)
class WebEnv:
    """Where the server and the commands of a session live: their environment and folders."""

    env: dict[str, str]
    root: Path

    @property
    def projects_dir(self) -> Path:
        return self.root / "projects"


@dataclass(frozen=True)
class WebProject:
    name: str
    path: Path


@dataclass
class RequestLog:
    """Every URL the page asked for (requests and websockets), and those the browser itself refused
    to send (a Content-Security-Policy: Playwright reports the request, then fails it with "csp")."""

    urls: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def add(self, url: str) -> None:
        self.urls.append(url)

    def failed(self, url: str, failure: str | None) -> None:
        if failure is not None and ("csp" in failure.lower()):
            self.blocked.append(url)

    def foreign(self) -> list[str]:
        """The URLs sent somewhere other than this machine's loopback (data:, blob: stay in the page)."""
        left = [url for url in self.urls
                if urlsplit(url).scheme in ("http", "https", "ws", "wss")
                and (urlsplit(url).hostname or "") not in LOOPBACK_NAMES]
        for url in self.blocked:
            if url in left:
                left.remove(url)
        return left


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.1) -> Any:
    """Poll ``condition`` until it is truthy (and return that), or fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        time.sleep(every_s)


def chart_nodes(page: Any) -> dict[str, dict[str, Any]]:
    """The flowchart's nodes as drawn now: run id -> {id, state, label}."""
    return {node["id"]: node for node in page.evaluate(NODES_JS)}


def click_node(page: Any, run_id: int) -> None:
    """Click a run's box where cytoscape drew it (a real click on the canvas)."""
    where = page.evaluate(f"(id) => {CHART}.getElementById(String(id)).renderedPosition()", run_id)
    box = page.locator("#chart").bounding_box()
    page.mouse.click(box["x"] + where["x"], box["y"] + where["y"])
