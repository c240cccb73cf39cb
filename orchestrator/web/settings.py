"""What one ``orch web`` server serves, and how it is reached."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BIND = "127.0.0.1"
DEFAULT_PORT = 8765


@dataclass(frozen=True)
class WebSettings:
    """``projects`` are the folders served (None: every project of the registry, ``--all``).

    ``token`` is what logs a browser in (printed at start, in the URL it prints); ``secret``
    signs the session cookie; both are made fresh at each start unless given."""

    projects: tuple[Path, ...] | None = None
    bind: str = DEFAULT_BIND
    port: int = DEFAULT_PORT
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: host names the browser may use in its Host header (DNS rebinding: a page of another site
    #: resolving its own name to 127.0.0.1 must not reach us)
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")
