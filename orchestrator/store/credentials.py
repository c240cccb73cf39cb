"""Store URLs never carry a password; PostgreSQL credentials come from libpq's own places.

A store URL travels far: into ``project.json``, every batch job's ``payload.json`` on the
shared file system, SSH payloads, error messages, events and logs. So a password is never
part of it. psycopg connects through libpq, which finds the password itself, in this order:
``PGPASSWORD`` in the environment, then the password file (``PGPASSFILE``, default
``~/.pgpass``, lines ``host:port:database:user:password``); a service file (``PGSERVICEFILE``,
default ``~/.pg_service.conf``, used with ``?service=NAME`` in the URL) can hold the whole
connection. libpq silently ignores a password file that others may read, and the connection
then fails with a confusing "password authentication failed": :func:`check_password_files`
says so up front, naming the file and the ``chmod`` that fixes it.

:func:`refuse_password` turns away a URL that holds a password (in its user part or as a
``password=`` query param) with the pgpass line to write instead; :func:`redact` is what
every message shows of a URL, whatever it holds.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from orchestrator.errors import UsageError

HIDDEN = "***"
_PASSWORD_KEYS = ("password",)
_USERINFO_PASSWORD = re.compile(r"(://[^:/@?#]*):[^@/?#]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_SERVICE_PASSWORD = re.compile(r"^\s*password\s*=", re.MULTILINE)


class CredentialsError(UsageError):
    """A password where it must not be, or a credentials file others can read."""


def _parsed(url: str) -> URL | None:
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def has_password(url: str) -> bool:
    """Whether ``url`` holds a password (``user:secret@`` or ``?password=``)."""
    parsed = _parsed(url)
    if parsed is None:
        return bool(_USERINFO_PASSWORD.search(url) or _QUERY_PASSWORD.search(url))
    return bool(parsed.password) or any(key.lower() in _PASSWORD_KEYS for key in parsed.query)


def without_password(url: str) -> str:
    """``url`` with any password taken out (user part and query)."""
    parsed = _parsed(url)
    if parsed is None:
        return _QUERY_PASSWORD.sub("", _USERINFO_PASSWORD.sub(r"\1@", url))
    keys = [key for key in parsed.query if key.lower() in _PASSWORD_KEYS]
    return parsed._replace(password=None).difference_update_query(keys).render_as_string(hide_password=False)


def redact(url: str) -> str:
    """``url`` as messages, ``orch project info`` and logs show it: a password becomes ``***``."""
    parsed = _parsed(url)
    if parsed is not None and parsed.get_backend_name() == "sqlite":
        return url  # a file path: nothing to hide, and re-rendering would escape it
    shown = _USERINFO_PASSWORD.sub(rf"\1:{HIDDEN}@", url) if parsed is None else parsed.render_as_string()
    return _QUERY_PASSWORD.sub(rf"\1{HIDDEN}", shown)  # render_as_string hides only the user part's


def refuse_password(url: str, source: str) -> None:
    """Refuse a store URL with a password; the message says where the password goes instead.

    ``source`` names what the user gave (``store URL (--store, store_url=)``, ``<file>:
    store_url``). The message never repeats the password."""
    if not has_password(url):
        return
    raise CredentialsError(
        f"{source} {redact(url)} holds a password; a store URL is copied into project.json, "
        f"job payloads and messages, so it must not. Give the URL without it ({without_password(url)}) and "
        f"put the password in {password_file()} (readable by you only: chmod 600), as the line "
        f"{pgpass_line(url)} ; or set PGPASSWORD, or use a service file (?service=NAME)")


def pgpass_line(url: str) -> str:
    """The ``host:port:database:user:PASSWORD`` line libpq would match for ``url``."""
    parsed = _parsed(url)
    if parsed is None:
        return "HOST:PORT:DATABASE:USER:PASSWORD"
    fields = [parsed.host or "localhost", str(parsed.port or 5432), parsed.database or "*",
              parsed.username or "*"]
    return ":".join(_pgpass_escape(field) for field in fields) + ":PASSWORD"


def _pgpass_escape(field: str) -> str:
    return field.replace("\\", "\\\\").replace(":", "\\:")


def password_file(env: Mapping[str, str] | None = None) -> Path:
    """libpq's password file: ``PGPASSFILE``, else ``~/.pgpass``."""
    env = os.environ if env is None else env
    return Path(env["PGPASSFILE"]).expanduser() if env.get("PGPASSFILE") else Path.home() / ".pgpass"


def service_file(env: Mapping[str, str] | None = None) -> Path:
    """libpq's per-user service file: ``PGSERVICEFILE``, else ``~/.pg_service.conf``."""
    env = os.environ if env is None else env
    return Path(env["PGSERVICEFILE"]).expanduser() if env.get("PGSERVICEFILE") else Path.home() / ".pg_service.conf"


def check_password_files(env: Mapping[str, str] | None = None) -> None:
    """Refuse a password file (or a service file holding a password) that others can read.

    libpq would ignore such a password file and fail later with "password authentication
    failed"; a readable service file leaks its password. The message names the file."""
    pgpass = password_file(env)
    mode = _loose_mode(pgpass)
    if mode is not None:
        raise CredentialsError(f"{pgpass}: the PostgreSQL password file can be read by others (mode {mode:04o}); "
                               f"libpq ignores it then. Run: chmod 600 {pgpass}")
    service = service_file(env)
    mode = _loose_mode(service)
    if mode is not None and _holds_password(service):
        raise CredentialsError(f"{service}: the PostgreSQL service file holds a password and can be read by "
                               f"others (mode {mode:04o}). Run: chmod 600 {service}")


def _loose_mode(path: Path) -> int | None:
    """The file's permission bits when group or others have any access, else None."""
    try:
        info = path.stat()
    except OSError:  # no such file (the usual case) or not ours to look at: libpq decides
        return None
    if not stat.S_ISREG(info.st_mode) or not info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return None
    return stat.S_IMODE(info.st_mode)


def _holds_password(path: Path) -> bool:
    try:
        return bool(_SERVICE_PASSWORD.search(path.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False
