"""Projects and names (issue 17, point 6): delete keeps foreign files. A project made in a folder
that already holds the user's data removes, on delete, only what the project made (as recorded
in project.json at creation) and says what it left."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

import orchestrator
from orchestrator.cli import main
from orchestrator.errors import UsageError
from orchestrator.project import MADE_LATER, PROJECT_FILE, RUNS_DIR, Project, Registry
from orchestrator.scheduler import daemon, lock
from orchestrator.scheduler.lock import SchedulerLock
from orchestrator.security import project_tls


def user_data(folder: Path) -> dict[str, str]:
    """The user's files before any project: movies, a gain reference, notes, their own hosts.toml."""
    (folder / "movies").mkdir(parents=True)
    for index in range(3):
        (folder / "movies" / f"movie_{index:03d}.tif").write_bytes(bytes([index]) * 1000)
    (folder / "gain.mrc").write_bytes(b"gain" * 100)
    (folder / "notes.txt").write_text("session 1, apoferritin\n")
    (folder / "hosts.toml").write_text("# the user's own hosts file\n")
    return snapshot(folder)


def snapshot(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def run_like_the_scheduler(project: Project) -> None:
    """Everything the orchestrator makes after creation: a run folder, the lock, the log, pilot logs,
    the TLS credentials."""
    with project.open_store() as store:
        run = store.runs.create("testkit.noop", {}, name="motioncorr-1")
    (project.run_dir(run.name) / "logs").mkdir(parents=True)
    (project.run_dir(run.name) / "logs" / "step.log").write_text("ok\n")
    (project.path / lock.LOCK_FILE).write_text("")
    (project.path / daemon.LOG_FILE).write_text("scheduler started\n")
    (project.path / "pilots" / "slurm").mkdir(parents=True)
    (project.path / "pilots" / "slurm" / "pilot-1.out").write_text("pilot\n")
    project_tls(project.path)


def test_delete_removes_what_the_project_made_and_keeps_the_users_files(tmp_path: Path) -> None:
    folder = tmp_path / "session1"
    before = user_data(folder)
    project = Project.create(folder)
    run_like_the_scheduler(project)
    assert {p.name for p in project.foreign_entries()} == {"movies", "gain.mrc", "notes.txt", "hosts.toml"}

    deletion = project.delete()

    assert snapshot(folder) == before  # every byte of the user's data, and nothing else
    assert sorted(p.name for p in folder.iterdir()) == ["gain.mrc", "hosts.toml", "movies", "notes.txt"]
    assert {p.name for p in deletion.removed} == {PROJECT_FILE, RUNS_DIR, "store.sqlite", *MADE_LATER}
    assert sorted(Path(what).name for what, _ in deletion.left) == ["gain.mrc", "hosts.toml", "movies", "notes.txt"]
    assert {why for _, why in deletion.left} == {"not made by the project"}
    assert Registry().find("session1") is None


def test_a_folder_the_project_made_goes_with_it(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "new" / "proj")
    run_like_the_scheduler(project)
    deletion = project.delete()
    assert not project.path.exists() and project.path in deletion.removed and deletion.left == []
    assert (tmp_path / "new").is_dir()  # only the folder the project made


def test_an_empty_folder_that_existed_before_stays(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    deletion = Project.create(tmp_path / "proj").delete()
    assert (tmp_path / "proj").is_dir() and list((tmp_path / "proj").iterdir()) == []
    assert deletion.left == [(str(tmp_path / "proj"), "the folder existed before the project")]


@pytest.mark.parametrize("taken", [RUNS_DIR, "store.sqlite", "scheduler.log", "pilots"])
def test_a_folder_holding_a_name_the_project_would_own_is_refused(tmp_path: Path, taken: str) -> None:
    folder = tmp_path / "session1"
    user_data(folder)
    target = folder / taken
    if "." in taken:
        target.write_text("the user's\n")
    else:
        target.mkdir()
        (target / "mine.txt").write_text("the user's\n")
    before = snapshot(folder)
    with pytest.raises(UsageError, match=rf"already holds {re.escape(taken)}, which a project makes as its own"):
        Project.create(folder)
    assert snapshot(folder) == before and not (folder / PROJECT_FILE).exists()
    assert Registry().find("session1") is None


def test_delete_follows_the_record_made_at_creation_not_the_names_it_knows_today(tmp_path: Path) -> None:
    """A project made by a version that did not make pilots/ does not own a pilots/ folder."""
    project = Project.create(tmp_path / "proj")
    document = json.loads((project.path / PROJECT_FILE).read_text())
    document["made"]["entries"].remove("pilots")
    (project.path / PROJECT_FILE).write_text(json.dumps(document))
    (project.path / "pilots").mkdir()
    (project.path / "pilots" / "users-own.txt").write_text("kept\n")
    deletion = Project.load(project.path).delete()
    assert (project.path / "pilots" / "users-own.txt").read_text() == "kept\n"
    assert (str(project.path / "pilots"), "not made by the project") in deletion.left
    assert not (project.path / RUNS_DIR).exists() and not (project.path / PROJECT_FILE).exists()


@pytest.mark.parametrize("entry", ["../outside", "/etc", "", ".", "runs/../../x"])
def test_a_hand_edited_record_cannot_reach_outside_the_folder(tmp_path: Path, entry: str) -> None:
    project = Project.create(tmp_path / "proj")
    (tmp_path / "outside").mkdir()
    document = json.loads((project.path / PROJECT_FILE).read_text())
    document["made"]["entries"].append(entry)
    (project.path / PROJECT_FILE).write_text(json.dumps(document))
    with pytest.raises(UsageError, match=r"project.json: not a valid project file .*not a path inside the project"):
        Project.load(project.path)
    assert (tmp_path / "outside").is_dir() and (project.path / RUNS_DIR).is_dir()


def test_a_project_from_before_the_record_loses_only_the_orchestrators_names(tmp_path: Path) -> None:
    folder = tmp_path / "legacy"
    before = user_data(folder)
    project = Project.create(folder)
    run_like_the_scheduler(project)
    document = json.loads((folder / PROJECT_FILE).read_text())
    del document["made"]
    (folder / PROJECT_FILE).write_text(json.dumps(document))
    Project.load(folder).delete()
    assert snapshot(folder) == before


def test_a_runs_link_is_removed_but_not_what_it_points_to(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "proj")
    scratch = tmp_path / "scratch" / "proj-runs"
    scratch.mkdir(parents=True)
    (scratch / "motioncorr-1").mkdir()
    project.runs_dir.rmdir()
    project.runs_dir.symlink_to(scratch)  # the user moved the runs to scratch space
    deletion = project.delete()
    assert (scratch / "motioncorr-1").is_dir() and not project.path.exists()
    assert (str(scratch), "the target of the link runs (only the link was removed)") in deletion.left


def test_a_store_outside_the_folder_is_left_and_said(tmp_path: Path) -> None:
    store = tmp_path / "elsewhere" / "shared.sqlite"
    project = Project.create(tmp_path / "proj", store_url=str(store))
    assert "shared.sqlite" not in " ".join(project.owned)
    deletion = project.delete()
    assert store.is_file() and not project.path.exists()
    assert deletion.left == [(str(store), "the store is outside the project folder; project proj's records stay in it")]


def test_delete_is_refused_while_the_scheduler_runs(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "proj")
    held = SchedulerLock(project)
    assert held.acquire()
    try:
        with pytest.raises(UsageError, match=r"its scheduler is running .* orch daemon proj --stop"):
            project.delete()
        assert (project.path / PROJECT_FILE).exists() and Registry().find("proj") == project.path
    finally:
        held.release()
    project.delete()
    assert not project.path.exists()


def test_a_failed_create_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(orchestrator.errors.OrchestratorError, match="cannot reach the database"):
        Project.create(tmp_path / "proj", store_url="postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert not (tmp_path / "proj").exists() and Registry().find("proj") is None


def test_the_owned_names_cover_every_top_level_entry_the_code_makes() -> None:
    """Every `<project folder> / "literal"` in the code is a name the project owns (or reads only)."""
    assert lock.LOCK_FILE in MADE_LATER and daemon.LOG_FILE in MADE_LATER
    source = Path(orchestrator.__file__).parent
    pattern = re.compile(r"(?:project_dir|project\.path|self\.path|project_path)\)?\s*/\s*\"([^\"]+)\"")
    made = {match for path in source.rglob("*.py") for match in pattern.findall(path.read_text())}
    assert made - {PROJECT_FILE, RUNS_DIR, *MADE_LATER} == set(), made
    # the same through a constant: a new one is a new entry, to add to MADE_LATER (or here if only read)
    # CACHE_DIR (web thumbnails) and LIVE_FILE (hosts' dashboards) lie inside the owned ".orch"
    known = {"LOCK_FILE", "LOG_FILE", "PROJECT_FILE", "RUNS_DIR", "STORE_FILE", "HOSTS_FILE_NAME", "CACHE_DIR",
             "LIVE_FILE"}
    by_constant = re.compile(r"(?:project_dir|project\.path|self\.path|project_path)\)?\s*/\s*([A-Z][A-Z_]+)\b")
    constants = {match for path in source.rglob("*.py") for match in by_constant.findall(path.read_text())}
    assert constants <= known, constants - known


def test_orch_project_create_and_delete_say_what_is_not_the_projects(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "session1"
    before = user_data(folder)
    assert main(["project", "create", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "created project session1" in captured.out
    assert ("warning: the folder already holds 3 files and 1 folder (gain.mrc, hosts.toml, movies, notes.txt); "
            "they are not part of the project and `orch project delete` will leave them") in captured.err
    assert main(["project", "delete", "session1", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "deleted project session1: removed runs, store.sqlite, project.json" in out
    assert "left gain.mrc, hosts.toml, movies, notes.txt: not made by the project" in out
    assert snapshot(folder) == before
    assert main(["project", "list", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []
