"""Shared fixtures: store URLs for SQLite and for the real PostgreSQL that `make test` starts.

PostgreSQL comes from ``tests/infra/postgres.sh`` (Debian's server in a temp dir, started by
`make test`), whose URL arrives in ``ORCH_TEST_PG_URL``. Outside CI a missing server skips the
PostgreSQL variants with the reason; in CI (``CI`` set) it is an error (``infra.services.require``;
the root ``conftest.py`` fails any other skip in CI that is not on its allow-list).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra.services import require

from orchestrator.store.admin import temporary_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    admin = os.environ.get("ORCH_TEST_PG_URL", "")
    require(admin, "ORCH_TEST_PG_URL is not set: PostgreSQL not started (run `make test`, or "
                   "`bash tests/infra/postgres.sh start` and set ORCH_TEST_PG_URL from `postgres.sh url`)")
    with temporary_database(admin, "orch_t") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return request.getfixturevalue("pg_url")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's project list out of the tests."""
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "orch-home"))
