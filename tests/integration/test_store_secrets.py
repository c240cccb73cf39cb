"""Secrets (issue 17, point 8) on the real PostgreSQL of tests/infra/postgres.sh: a project whose
role must give a password works with the password in a pgpass file (PGPASSFILE, mode 0600), and
no file of the project, no job folder or payload, no event, no step error and no scheduler log
holds the password. tests/infra/postgres.sh makes that role (orch_pw, scram-sha-256)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from infra.services import parse_exports, require, require_service
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from orchestrator.cli import main
from orchestrator.errors import OrchestratorError
from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import planner
from orchestrator.scheduler.control import wait_for_run
from orchestrator.store import RunState
from orchestrator.store.admin import temporary_database
from orchestrator.store.credentials import CredentialsError

pytestmark = [pytest.mark.integration]
REPO = Path(__file__).resolve().parents[2]
HOSTS_FILE = REPO / "hosts" / "ci-test.toml"


@dataclass(frozen=True)
class PasswordStore:
    url: str  # the store URL as a project keeps it: no password
    password: str
    pgpass: Path


def _password_role() -> tuple[str, str]:
    """The role that must give a password, and its password, from postgres.sh."""
    env = {key: os.environ[key] for key in ("ORCH_TEST_PG_PW_ROLE", "ORCH_TEST_PG_PW_SECRET_FILE") if key in os.environ}
    if len(env) < 2:
        script = REPO / "tests" / "infra" / "postgres.sh"
        done = subprocess.run(["bash", str(script), "env"], capture_output=True, text=True, timeout=60, check=False)
        env = parse_exports(done.stdout)
    require("ORCH_TEST_PG_PW_ROLE" in env,
            "tests/infra/postgres.sh env gives no password role: run `bash tests/infra/postgres.sh start`")
    return env["ORCH_TEST_PG_PW_ROLE"], Path(env["ORCH_TEST_PG_PW_SECRET_FILE"]).read_text().strip()


@pytest.fixture
def password_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PasswordStore]:
    """A fresh database owned by the password role, and a pgpass file (0600) that holds the password."""
    admin = require_service("postgres")["ORCH_TEST_PG_URL"]
    role, password = _password_role()
    with temporary_database(admin, "orch_secret") as admin_db_url:
        database = make_url(admin_db_url).database
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" OWNER TO {role}'))
        engine.dispose()
        parsed = make_url(admin_db_url)
        url = parsed.set(username=role).render_as_string(hide_password=False)
        pgpass = tmp_path / "pgpass"
        pgpass.write_text(f"{parsed.host}:{parsed.port}:{database}:{role}:{password}\n")
        pgpass.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(pgpass))
        monkeypatch.delenv("PGPASSWORD", raising=False)
        monkeypatch.delenv("PGSERVICEFILE", raising=False)
        yield PasswordStore(url, password, pgpass)


def test_the_role_really_needs_the_password(password_store: PasswordStore, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the pgpass file the server refuses: the test below gets its password from that file."""
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-file"))
    with pytest.raises(OrchestratorError, match="cannot reach the database: .*no password supplied"):
        Project.create(tmp_path / "proj", store_url=password_store.url)
    assert not (tmp_path / "proj").exists()


def test_a_pgpass_file_others_can_read_is_refused_by_name(password_store: PasswordStore, tmp_path: Path) -> None:
    password_store.pgpass.chmod(0o644)
    with pytest.raises(CredentialsError, match=f"{password_store.pgpass}: .* chmod 600"):
        Project.create(tmp_path / "proj", store_url=password_store.url)
    assert not (tmp_path / "proj").exists()


def test_the_right_password_in_the_url_is_still_refused(password_store: PasswordStore, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with_password = make_url(password_store.url).set(password=password_store.password)
    code = main(["project", "create", str(tmp_path / "proj"), "--store",
                 with_password.render_as_string(hide_password=False)])
    captured = capsys.readouterr()
    assert code == 2 and "holds a password" in captured.err
    assert password_store.password not in captured.out + captured.err
    assert not (tmp_path / "proj").exists()


def test_no_password_in_project_files_payloads_events_errors_or_logs(
        password_store: PasswordStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in require_service("slurm").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ORCH_HOSTS", str(HOSTS_FILE))
    project = Project.create(tmp_path / "proj", store_url=password_store.url)
    registry = discover()
    with project.open_store() as store:
        local = planner.create_run(store, project, registry, "testkit.fanout", {"count": 3}).id
        batch = planner.create_run(store, project, registry, "testkit.sleep", {"count": 1, "seconds": 0.2},
                                   host="ci-slurm-jobs").id
        failing = planner.create_run(store, project, registry, "testkit.fail", {"fail_always": True, "retries": 0},
                                     host="ci-slurm-jobs").id
    log = project.path / "scheduler.log"
    with open(log, "ab") as output:
        daemon = subprocess.Popen([sys.executable, "-m", "orchestrator.scheduler.daemon", str(project.path),
                                   "--idle-exit", "2", "--workers", "1"],
                                  stdout=output, stderr=output, start_new_session=True)
    try:
        with project.open_store() as store:
            states = {run_id: wait_for_run(store, run_id, timeout_s=240).run_state
                      for run_id in (local, batch, failing)}
        daemon.wait(120)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert states == {local: RunState.FINISHED, batch: RunState.FINISHED, failing: RunState.FAILED}, \
        log.read_text(errors="replace")[-3000:]

    secret = password_store.password.encode()
    payloads = sorted(project.runs_dir.rglob("payload.json"))
    assert payloads, "the batch steps wrote no payload: the search below would prove nothing"
    assert all(b"orch_pw@" in payload.read_bytes() for payload in payloads)  # the store URL is there, bare
    files = [path for path in project.path.rglob("*") if path.is_file()]
    assert {"project.json", "scheduler.log", "payload.json"} <= {path.name for path in files}
    holding = [str(path) for path in files if secret in path.read_bytes()]
    assert holding == []

    with project.open_store() as store:
        events = store.events.list()
        runs = [store.runs.get(run_id) for run_id in (local, batch, failing)]
        steps = [step for run_id in (local, batch, failing) for step in store.steps.list(run_id)]
    assert any(event.message for event in events) and any(step.error for step in steps)
    recorded = repr([events, runs, steps])
    assert password_store.password not in recorded

    assert main(["project", "info", str(project.path), "--json"]) == 0
    shown = capsys.readouterr().out
    assert f"orch_pw@{make_url(password_store.url).host}" in shown and password_store.password not in shown

    deletion = project.delete()
    assert (make_url(password_store.url).render_as_string(), "the store is outside the project folder; project "
            "proj's records stay in it") in deletion.left
