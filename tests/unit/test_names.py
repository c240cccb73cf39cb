"""Projects and names (issue 17, point 6): hostile run and project names are refused by every
way a name comes in (the CLI's --name, a workflow file, the Python API's name=, the store),
the error names the param, and nothing is made outside the project."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.errors import UsageError
from orchestrator.names import MAX_NAME_LENGTH, InvalidNameError, check_project_name, check_run_name, default_run_name
from orchestrator.project import Project

OUTSIDE = f"/tmp/orch-hostile-{uuid.uuid4().hex[:8]}"  # an absolute path that must never be made

HOSTILE = {
    "parent": ("../../x", "path separator '/'"),
    "absolute": (OUTSIDE, "path separator '/'"),
    "hidden": (".hidden", "starts with '.'"),
    "dotdot": ("..", "starts with '.'"),
    "subfolder": ("a/b", "path separator '/'"),
    "backslash": ("a\\b", "path separator '\\\\'"),
    "empty": ("", "is empty"),
    "huge": ("a" * 10_000, "is 10000 characters long"),
    "newline": ("a\nb", "control character '\\n'"),
    "nul": ("a\0b", "control character '\\x00'"),
    "cyrillic o": ("m\u043etioncorr", "U+043E, cyrillic small letter o"),
    "fullwidth solidus": ("a\uff0fb", "U+FF0F, fullwidth solidus"),
    "option-like": ("-rf", "starts with '-'"),
    "space": ("my run", "contains ' '"),
    "only digits": ("12", "reads as a run id"),
}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "root" / "proj")


def tree(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


@pytest.mark.parametrize("name", ["motioncorr-1", "2D_classes.v2", "a", "refine3d.class_3-masked",
                                  "x" * MAX_NAME_LENGTH])
def test_names_users_write_are_accepted(name: str) -> None:
    assert check_run_name(name) == name
    assert check_project_name(name) == name


@pytest.mark.parametrize(("name", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_run_names_are_refused_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(InvalidNameError) as caught:
        check_run_name(name, "--name")
    message = str(caught.value)
    assert message.startswith("--name ") and reason in message, message
    assert "letters, digits, '_', '.' and '-'" in message
    assert len(message) < 400  # a 10,000-character name is cut, not echoed
    assert caught.value.exit_code == 2


def test_a_project_may_be_only_digits_a_run_may_not() -> None:
    assert check_project_name("2024") == "2024"
    with pytest.raises(InvalidNameError, match="reads as a run id"):
        check_run_name("2024")


def test_a_name_with_a_trailing_newline_is_refused() -> None:  # `$` in a regex would let it through
    with pytest.raises(InvalidNameError, match="control character"):
        check_run_name("motioncorr\n")


def test_default_names_follow_the_rules_whatever_the_protocol_is_called() -> None:
    assert default_run_name("emtools.motioncorr", 12) == "motioncorr-12"
    assert default_run_name("emtools.motioncorr", 12, copy=1) == "motioncorr-12.1"
    assert default_run_name("odd.h\u00e9llo w/rld", 3) == "h_llo_w_rld-3"
    assert default_run_name("plugin.._hidden", 4) == "hidden-4"
    assert default_run_name("plugin.", 5) == "run-5"
    long = default_run_name("p." + "x" * 500, 123456, copy=7)
    assert len(long) == MAX_NAME_LENGTH and long.endswith("-123456.7")


def test_the_store_refuses_a_hostile_name_and_records_nothing(project: Project) -> None:
    with project.open_store() as store:
        for name, _ in HOSTILE.values():
            with pytest.raises(InvalidNameError, match=r"^run name \(--name, name=\) "):
                store.runs.create("testkit.noop", {}, name=name)
        assert store.runs.list() == []


def test_a_default_name_taken_by_hand_gets_a_copy_number(project: Project) -> None:
    with project.open_store() as store:
        store.runs.create("testkit.noop", {}, name="noop-2")  # id 1, named like run 2's default
        second = store.runs.create("testkit.noop", {})
        assert (second.id, second.name) == (2, "noop-2.1")
        assert store.runs.create("testkit.noop", {}).name == "noop-3"


@pytest.mark.parametrize("name", ["../x", "..", ".", "", "a/b", "/tmp/x", "a\0b"])
def test_run_dir_refuses_any_name_that_leaves_runs(project: Project, name: str) -> None:
    with pytest.raises(UsageError, match="would not be inside"):
        project.run_dir(name)


def test_run_dir_still_serves_names_older_stores_allowed(project: Project) -> None:
    assert project.run_dir("my run") == project.runs_dir / "my run"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("name", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
def test_orch_run_name_refuses_hostile_names_and_makes_nothing(project: Project, tmp_path: Path, name: str,
                                                               reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = tree(tmp_path)
    code, err = run_cli(["run", str(project.path), "testkit.noop", f"--name={name}", "--no-daemon"], capsys)
    assert code == 2, err
    assert err.startswith("orch: error: run name (--name, name=) ") and reason in err, err
    assert tree(tmp_path) == before and not Path(OUTSIDE).exists()
    with project.open_store() as store:
        assert store.runs.list() == []


@pytest.mark.parametrize(("name", "reason"), [v for k, v in HOSTILE.items() if k != "empty"],
                         ids=[k for k in HOSTILE if k != "empty"])
def test_a_workflow_file_with_a_hostile_name_is_refused_and_makes_nothing(
        project: Project, tmp_path: Path, name: str, reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps({"runs": [{"name": "fine", "protocol": "testkit.noop"},
                                             {"name": name, "protocol": "testkit.noop"}]}))
    before = tree(tmp_path)
    code, err = run_cli(["run", str(project.path), "--workflow", str(workflow), "--no-daemon"], capsys)
    assert code == 2, err
    assert err.startswith(f"orch: error: {workflow}: run 2") and '"name" ' in err and reason in err, err
    assert tree(tmp_path) == before and not Path(OUTSIDE).exists()
    with project.open_store() as store:
        assert store.runs.list() == []  # all or none: the good first run was not made either


def test_the_python_api_names_its_param(project: Project) -> None:
    from orchestrator import api

    with pytest.raises(InvalidNameError, match=r"name=\) '\.\./\.\./x': contains a path separator"):
        api.run(project, "testkit.noop", name="../../x", wait=False)
    assert not (project.path.parent / "x").exists()


@pytest.mark.parametrize(("name", "reason"), [v for k, v in HOSTILE.items() if k != "only digits"],
                         ids=[k for k in HOSTILE if k != "only digits"])
def test_orch_project_create_refuses_hostile_names(tmp_path: Path, name: str, reason: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["project", "create", str(tmp_path / "p"), f"--name={name}"], capsys)
    assert code == 2, err
    assert err.startswith("orch: error: project name (--name, name=) ") and reason in err, err
    assert not (tmp_path / "p").exists()


def test_a_folder_name_that_is_not_a_valid_project_name_says_to_use_name(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["project", "create", str(tmp_path / "session 1")], capsys)
    assert code == 2 and "project name (the folder's name; choose one with --name) 'session 1'" in err, err
    assert not (tmp_path / "session 1").exists()
    code, err = run_cli(["project", "create", str(tmp_path / "session 1"), "--name", "session1"], capsys)
    assert code == 0, err
    assert Project.load("session1").path == tmp_path / "session 1"
