"""Find the test services that ``tests/infra/<name>.sh`` start, from Python tests.

Standard library only, so that it can be imported from any conftest or test. Pytest puts
``tests/`` on ``sys.path`` (``tests/conftest.py`` has no package around it), so::

    from infra.services import require_service

    def test_submit_to_slurm(monkeypatch):
        for key, value in require_service("slurm").items():
            monkeypatch.setenv(key, value)   # SLURM_CONF, ORCH_TEST_SLURM_PARTITION
        ...

Services and what their environment holds (``bash tests/infra/<name>.sh env`` prints it):

- ``postgres``: ``ORCH_TEST_PG_URL`` (read from ``postgres.sh url``)
- ``slurm``: ``SLURM_CONF``, ``ORCH_TEST_SLURM_PARTITION``
- ``sge``: ``SGE_ROOT``, ``SGE_CELL``, ``SGE_QMASTER_PORT``, ``SGE_EXECD_PORT``
- ``sshd``: ``ORCH_TEST_SSH_HOST``, ``_PORT``, ``_USER``, ``_KEY``, ``_KNOWN_HOSTS``, ``_CONFIG``

The scripts are started by ``make test`` (or by hand: ``bash tests/infra/slurm.sh start``).

Every test that needs something the machine may lack (a service, a program, root) asks through
:func:`require` (or :func:`require_service`): outside CI the test is skipped with the reason; in
CI (``CI`` set, as ``make test`` and ``.ci/run`` do) it fails, because CI is where the project
provides everything. The root ``conftest.py`` backs this up: in CI any other skip whose reason is
not on its allow-list (hardware, e.g. no GPU) fails too.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import unittest
from pathlib import Path
from typing import NoReturn

INFRA_DIR = Path(__file__).resolve().parent
SERVICES = ("postgres", "slurm", "sge", "sshd")
_TIMEOUT_S = 60
_cache: dict[str, dict[str, str]] = {}


class RequirementMissing(RuntimeError):
    """A test's prerequisite is missing in CI, where it must be there (outside CI: a skip)."""


class ServiceUnavailable(RequirementMissing):
    """A test service is not running (or its script failed); the message says how to start it."""


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set to a non-empty value (as in conftest.py)."""
    return bool(os.environ.get("CI"))


def _run_script(name: str, command: str) -> str:
    if name not in SERVICES:
        raise ValueError(f"unknown test service {name!r}; known: {', '.join(SERVICES)}")
    script = INFRA_DIR / f"{name}.sh"
    try:
        done = subprocess.run(
            ["bash", str(script), command],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServiceUnavailable(f"`bash {script} {command}` did not answer within {_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise ServiceUnavailable(
            f"test service {name!r} is not available ({detail}); start it with `bash {script} start`"
        )
    return done.stdout


def parse_exports(text: str) -> dict[str, str]:
    """Parse ``export KEY=VALUE`` lines (values may be shell-quoted); other lines are ignored."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("export "):
            continue
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            env[key] = value
    return env


def service_env(name: str, *, refresh: bool = False) -> dict[str, str]:
    """The environment variables a client of service ``name`` needs, from its running instance.

    Runs ``bash tests/infra/<name>.sh env`` (``url`` for postgres), which also checks that the
    service answers. The answer is cached per process; ``refresh=True`` asks again.
    Raises :class:`ServiceUnavailable` when the service is not running.
    """
    if refresh or name not in _cache:
        if name == "postgres":
            env = {"ORCH_TEST_PG_URL": _run_script(name, "url").strip()}
        else:
            env = parse_exports(_run_script(name, "env"))
        if not env or not all(env.values()):
            raise ServiceUnavailable(f"`bash {INFRA_DIR / name}.sh env` printed no usable exports")
        _cache[name] = env
    return dict(_cache[name])


def start_service(name: str) -> dict[str, str]:
    """Start service ``name`` (or reuse its running instance; needs root) and return its environment."""
    _run_script(name, "start")
    return service_env(name, refresh=True)


def require(condition: object, reason: str) -> None:
    """Go on only when ``condition`` is true: the one way a test says what it cannot run without.

    Outside CI a false condition skips the test with ``reason``; in CI it raises
    :class:`RequirementMissing`, a failure: a CI run that would quietly skip a test has a broken
    set-up, and must say so. ``reason`` should say
    what is missing and how to get it (which script installs or starts it).
    """
    if condition:
        return
    if in_ci():
        raise RequirementMissing(f"{reason} (CI is set: the project's scripts must provide it)")
    _skip(reason)


def _skip(reason: str) -> NoReturn:
    """Skip the running test: through pytest when it runs us (the report then shows the test's own
    line), else ``unittest.SkipTest`` (this module stays importable with the standard library only)."""
    try:
        import pytest
    except ImportError:
        raise unittest.SkipTest(reason) from None
    pytest.skip(reason)


def require_service(name: str, *, start: bool = False) -> dict[str, str]:
    """The environment of service ``name`` for a test that cannot run without it.

    When the service is not running (and ``start`` is false, or starting it failed):
    outside CI the test is skipped, with the reason; in CI (``CI`` set) it is an error, never a
    skip: :class:`ServiceUnavailable` is raised, so a broken test infrastructure cannot pass unnoticed.
    """
    try:
        return start_service(name) if start else service_env(name)
    except ServiceUnavailable as exc:
        if in_ci():
            raise
        _skip(str(exc))
