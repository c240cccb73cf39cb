"""Serve the web interface with uvicorn, and say how to reach it (the login link, a tunnel)."""

from __future__ import annotations

import socket
from collections.abc import Callable

from orchestrator.errors import UsageError
from orchestrator.web.settings import WebSettings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def login_url(settings: WebSettings) -> str:
    host = "127.0.0.1" if settings.bind in ("0.0.0.0", "::") else settings.bind
    return f"http://{host}:{settings.port}/login?token={settings.token}"


def check_port(settings: WebSettings) -> None:
    """A port already taken is said plainly, before uvicorn's own message."""
    family = socket.AF_INET6 if ":" in settings.bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.bind, settings.port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {settings.bind}:{settings.port} ({exc.strerror}); "
                             "choose another with --port") from None


def _say(line: str) -> None:
    print(line, flush=True)  # read by whoever started us, through a pipe


def serve(settings: WebSettings, announce: Callable[[str], None] = _say) -> None:
    """Run the server until interrupted."""
    import uvicorn

    from orchestrator.web.app import create_app

    check_port(settings)
    announce(f"em-orchestrator web interface: {login_url(settings)}")
    if settings.bind in LOOPBACK:
        announce(f"from another machine: ssh -L {settings.port}:127.0.0.1:{settings.port} THIS_HOST, "
                 "then open the link above")
    else:
        announce(f"warning: listening on {settings.bind}: anyone who reaches this port and has the token can act "
                 "on the projects")
    uvicorn.run(create_app(settings), host=settings.bind, port=settings.port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=3)
