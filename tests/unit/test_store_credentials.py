"""Secrets (issue 17, point 8), without a server: a store URL with a password is refused wherever
it comes in, the message says where the password goes instead and never repeats it, every
shown URL is redacted, and a password file others can read is named before libpq ignores it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.errors import UsageError
from orchestrator.project import Project
from orchestrator.store import ProjectStore
from orchestrator.store.credentials import (
    CredentialsError,
    check_password_files,
    has_password,
    pgpass_line,
    redact,
    without_password,
)
from orchestrator.store.errors import StoreError

SECRET = "Tr0ub4dor-and-3"
WITH_PASSWORD = {
    "user part": f"postgresql+psycopg://em:{SECRET}@db.example.org:5544/cryo",
    "query": f"postgresql+psycopg://em@db.example.org:5544/cryo?password={SECRET}&sslmode=require",
    "escaped": "postgresql+psycopg://em:Tr0ub4dor%40and%3A3@db.example.org/cryo",
}


@pytest.mark.parametrize("url", WITH_PASSWORD.values(), ids=WITH_PASSWORD.keys())
def test_a_password_is_found_taken_out_and_hidden(url: str) -> None:
    assert has_password(url)
    assert not has_password(without_password(url))
    assert SECRET not in redact(url) and "Tr0ub4dor" not in redact(url) and "***" in redact(url)
    assert "em@db.example.org" in without_password(url) and "Tr0ub4dor" not in without_password(url)


def test_urls_without_a_password_are_shown_as_they_are() -> None:
    for url in ("postgresql+psycopg://em@db/cryo", "postgresql+psycopg:///cryo?service=em", "sqlite:////p/store.sqlite"):
        assert not has_password(url) and redact(url) == url and without_password(url) == url


def test_an_unparsable_url_is_still_redacted() -> None:
    assert redact(f"post gres://em:{SECRET}@db/x") == "post gres://em:***@db/x"


def test_the_pgpass_line_matches_the_url() -> None:
    assert pgpass_line(WITH_PASSWORD["user part"]) == "db.example.org:5544:cryo:em:PASSWORD"
    assert pgpass_line("postgresql+psycopg://a:b@[::1]/d") == "\\:\\:1:5432:d:a:PASSWORD"


@pytest.mark.parametrize("url", WITH_PASSWORD.values(), ids=WITH_PASSWORD.keys())
def test_orch_project_create_refuses_a_password_and_says_where_it_goes(
        url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["project", "create", str(tmp_path / "proj"), "--store", url])
    captured = capsys.readouterr()
    assert code == 2
    assert "Tr0ub4dor" not in captured.out + captured.err
    assert captured.err.startswith("orch: error: store URL (--store, store_url=) postgresql+psycopg://em")
    assert "holds a password" in captured.err and ".pgpass" in captured.err and "chmod 600" in captured.err
    assert "db.example.org:" in captured.err and ":cryo:em:PASSWORD" in captured.err
    assert not (tmp_path / "proj").exists()


def test_the_store_layer_refuses_a_password_too(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"^store URL postgresql\+psycopg://em:\*\*\*@db.example.org"):
        ProjectStore.open(WITH_PASSWORD["user part"])
    with pytest.raises(CredentialsError, match=r"^store URL .*\?password=\*\*\*&sslmode=require holds a password"):
        ProjectStore.create(WITH_PASSWORD["query"], "p")


def test_a_project_file_with_a_password_is_refused_by_name(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "proj")
    document = json.loads((project.path / "project.json").read_text())
    document["store_url"] = WITH_PASSWORD["user part"]
    (project.path / "project.json").write_text(json.dumps(document))
    with pytest.raises(CredentialsError) as caught:
        Project.load(project.path)
    assert str(caught.value).startswith(f"{project.path / 'project.json'}: store_url postgresql+psycopg://em:***@")
    assert SECRET not in str(caught.value)


def test_unreachable_store_errors_show_the_url_without_a_password() -> None:
    with pytest.raises(StoreError) as caught:
        ProjectStore.open("postgresql+psycopg://em@127.0.0.1:1/cryo?connect_timeout=2")
    assert str(caught.value).startswith("postgresql+psycopg://em@127.0.0.1:1/cryo?connect_timeout=2: cannot reach")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_password_file_others_can_read_is_named(tmp_path: Path, mode: int) -> None:
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"*:*:*:em:{SECRET}\n")
    pgpass.chmod(mode)
    with pytest.raises(UsageError) as caught:
        check_password_files({"PGPASSFILE": str(pgpass), "PGSERVICEFILE": str(tmp_path / "none")})
    assert str(caught.value) == (f"{pgpass}: the PostgreSQL password file can be read by others (mode {mode:04o}); "
                                 f"libpq ignores it then. Run: chmod 600 {pgpass}")
    pgpass.chmod(0o600)
    check_password_files({"PGPASSFILE": str(pgpass), "PGSERVICEFILE": str(tmp_path / "none")})


def test_a_readable_service_file_is_refused_only_when_it_holds_a_password(tmp_path: Path) -> None:
    service = tmp_path / "pg_service.conf"
    env = {"PGPASSFILE": str(tmp_path / "none"), "PGSERVICEFILE": str(service)}
    service.write_text("[em]\nhost=db\ndbname=cryo\nuser=em\n")
    service.chmod(0o644)
    check_password_files(env)
    service.write_text(f"[em]\nhost=db\nuser=em\n password = {SECRET}\n")
    with pytest.raises(CredentialsError, match="service file holds a password and can be read by others"):
        check_password_files(env)


def test_a_postgresql_store_checks_the_password_file_before_connecting(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pgpass = tmp_path / "pgpass"
    pgpass.write_text("*:*:*:em:x\n")
    pgpass.chmod(0o644)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    with pytest.raises(CredentialsError, match="chmod 600"):
        ProjectStore.open("postgresql+psycopg://em@127.0.0.1:1/cryo")
