"""The application layer's projects: create, list, info, find, delete, and the open handle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.app import projects, runs
from orchestrator.app.access import open_project
from orchestrator.errors import NotFoundError, UsageError


def test_create_list_info_and_delete(tmp_path: Path) -> None:
    folder = tmp_path / "session1"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's\n")
    created = projects.create_project(folder)
    assert (created.name, created.path) == ("session1", folder.resolve())
    assert [entry.name for entry in created.foreign] == ["notes.txt"]  # the user's file, left alone
    other = projects.create_project(tmp_path / "second", name="two")
    assert [(p.name, p.exists) for p in projects.list_projects()] == [("session1", True), ("two", True)]
    runs.submit_run(folder, "testkit.noop", start_scheduler=False)
    info = projects.project_info("session1")
    assert (info.name, info.runs, info.sets, info.items) == ("session1", 1, 0, 0)
    assert info.store == str(folder.resolve() / "store.sqlite")
    assert json.loads(json.dumps(info.to_dict()))["path"] == str(folder.resolve())
    assert projects.find_project("two").path == other.path
    deletion = projects.delete_project("session1")
    assert {path.name for path in deletion.removed} >= {"runs", "store.sqlite", "project.json"}
    assert [(left.path, left.why) for left in deletion.left] == [(str(folder.resolve() / "notes.txt"),
                                                                 "not made by the project")]
    assert (folder / "notes.txt").read_text() == "the user's\n"
    assert [p.name for p in projects.list_projects()] == ["two"]
    with pytest.raises(NotFoundError, match="session1: no project there or by that name"):
        projects.project_info("session1")


def test_a_project_whose_folder_is_gone_is_listed_as_missing(tmp_path: Path) -> None:
    created = projects.create_project(tmp_path / "gone")
    (created.path / "project.json").unlink()
    assert [(p.name, p.exists) for p in projects.list_projects()] == [("gone", False)]


def test_create_errors(tmp_path: Path) -> None:
    projects.create_project(tmp_path / "p")
    with pytest.raises(UsageError, match="a project already exists there"):
        projects.create_project(tmp_path / "p")
    with pytest.raises(UsageError, match="project name .*'bad name'"):
        projects.create_project(tmp_path / "q", name="bad name")
    with pytest.raises(NotFoundError):
        projects.delete_project(tmp_path / "never")


def test_an_open_handle_serves_many_calls_and_is_closed_by_its_owner(tmp_path: Path) -> None:
    created = projects.create_project(tmp_path / "p")
    with open_project(created.path) as handle:
        assert handle.name == "p" and handle.path == created.path
        runs.submit_run(handle, "testkit.noop", name="one", start_scheduler=False)
        assert projects.project_info(handle).runs == 1
        assert handle.store.runs.get("one").state == "queued"  # the layer left it open
