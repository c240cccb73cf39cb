"""Staging files to a host that does not share the project's file system, against a real sshd.

The "remote" work dir is a directory the test user ``orchtest`` owns, reached only over SSH
(the same disk, but nothing in the stager touches it except through the host).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra.services import require_service
from sqlalchemy import select

from orchestrator.cli import main as orch_main
from orchestrator.hosts.ssh.target import SSHTarget
from orchestrator.store import ProjectStore
from orchestrator.transfer import stager as stager_module
from orchestrator.transfer.errors import RemoteAgentError, TransferError
from orchestrator.transfer.ledger import FILES, RECORDS
from orchestrator.transfer.stager import Stager

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def target() -> SSHTarget:
    env = require_service("sshd", start=os.geteuid() == 0)
    return SSHTarget(env["ORCH_TEST_SSH_HOST"], int(env["ORCH_TEST_SSH_PORT"]), env["ORCH_TEST_SSH_USER"],
                     Path(env["ORCH_TEST_SSH_KEY"]), Path(env["ORCH_TEST_SSH_KNOWN_HOSTS"]))


@pytest.fixture
def remote_dir(target: SSHTarget) -> Iterator[Path]:
    """The host's work dir: owned by the SSH user, declared not shared (only reached over SSH)."""
    path = Path(tempfile.mkdtemp(prefix="orch-remote-work-", dir="/tmp"))
    shutil.chown(path, target.user)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "runs" / "import" / "movies").mkdir(parents=True)
    for index in range(30):
        (root / "runs" / "import" / "movies" / f"mic_{index:03d}.mrc").write_bytes(os.urandom(20_000 + index))
    (root / "runs" / "import" / "stack.mrcs").write_bytes(os.urandom(3_000_000))  # a "large" file in tests
    return root


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ProjectStore]:
    with ProjectStore.create(tmp_path / "store.sqlite", "p") as opened:
        yield opened


def _stager(store: ProjectStore, target: SSHTarget, **options: object) -> Stager:
    options.setdefault("large_file", 1_000_000)  # so that the test's 3 MB file takes the resumable stream
    options.setdefault("retry_delay_s", 0.1)
    return Stager(store, target, host="gpu-box", **options)  # type: ignore[arg-type]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _records(store: ProjectStore) -> list[dict[str, object]]:
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(RECORDS).order_by(RECORDS.c.id)).mappings()]


@pytest.mark.parametrize("bulk", ["paramiko", "openssh"])
def test_inputs_go_to_the_host_and_outputs_come_back(store: ProjectStore, target: SSHTarget, project: Path,
                                                     remote_dir: Path, bulk: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stager_module, "OPENSSH_MIN_BYTES", 0)  # every stream through `ssh` in the openssh case
    run = store.runs.create("emtools.ctf", {}, name="ctf")
    seen = []
    with _stager(store, target, bulk=bulk, progress=seen.append) as stager:
        staged = stager.stage_in(run.id, [project / "runs" / "import"], str(remote_dir), base=project, step_id=7)
        assert len(staged) == 31 and len(staged.sent) == 31
        for local, remote in staged.items():
            assert str(remote) == str(remote_dir / local.relative_to(project))
            assert _digest(Path(str(remote))) == _digest(local)
            assert os.stat(str(remote)).st_mtime_ns == local.stat().st_mtime_ns
        assert not list(remote_dir.rglob("*.orch-part"))
        assert seen[-1].finished and seen[-1].bytes_done == seen[-1].bytes_total == staged.bytes_sent

        # the "step" writes outputs on the host; they come back into the run's folder
        outputs = remote_dir / "runs" / "ctf"
        (outputs / "extra").mkdir(parents=True)
        for index in range(12):
            (outputs / "extra" / f"ctf_{index}.star").write_text(f"data_ {index}\n" * 50)
        (outputs / "volume.mrc").write_bytes(os.urandom(2_500_000))
        fetched = stager.stage_out(run.id, [str(outputs)], project / "runs" / "ctf",
                                   remote_base=str(outputs), step_id=7)
        assert len(fetched.sent) == 13
        for remote, local in fetched.items():
            assert local == project / "runs" / "ctf" / Path(remote).relative_to(outputs)
            assert _digest(local) == _digest(Path(remote))
    rows = _records(store)
    assert len(rows) == 44 and {r["state"] for r in rows} == {"done"}
    assert {(r["direction"], r["run_id"], r["step_id"], r["host"]) for r in rows} == {
        ("in", run.id, 7, "gpu-box"), ("out", run.id, 7, "gpu-box")}
    assert all(r["bytes_done"] == r["bytes_total"] and r["seconds"] is not None and r["sha256"] for r in rows)
    assert {r["method"].split("/")[1] for r in rows} == {bulk}
    assert [e.kind for e in store.events.list(run.id)].count("transfer") == 2


def test_second_staging_of_the_same_inputs_sends_nothing(store: ProjectStore, target: SSHTarget, project: Path,
                                                         remote_dir: Path) -> None:
    first, second = store.runs.create("a", {}), store.runs.create("b", {})
    with _stager(store, target) as stager:
        stager.stage_in(first.id, [project / "runs"], str(remote_dir), base=project)
        before = len(_records(store))
        again = stager.stage_in(second.id, [project / "runs"], str(remote_dir), base=project)
    assert again.sent == () and again.skipped == 31 and again.bytes_sent == 0
    assert len(_records(store)) == before == 31
    with store.engine.connect() as conn:
        assert conn.execute(select(FILES.c.host).distinct()).scalars().all() == ["gpu-box"]


def test_a_file_changed_at_the_source_is_sent_again_a_touched_one_is_not(store: ProjectStore, target: SSHTarget,
                                                                         project: Path, remote_dir: Path) -> None:
    movies = project / "runs" / "import" / "movies"
    with _stager(store, target) as stager:
        stager.stage_in(None, [project / "runs"], str(remote_dir), base=project)
        (movies / "mic_004.mrc").write_bytes(os.urandom(20_004))  # same size, new content
        os.utime(movies / "mic_005.mrc")  # new mtime, same content
        report = stager.stage_in(None, [project / "runs"], str(remote_dir), base=project)
        assert report.sent == (str(movies / "mic_004.mrc"),)
        assert _digest(remote_dir / "runs/import/movies/mic_004.mrc") == _digest(movies / "mic_004.mrc")
        # the touched file's new mtime is now in the ledger: the next call does not even hash it
        assert stager.stage_in(None, [project / "runs"], str(remote_dir), base=project).sent == ()


def test_a_file_removed_on_the_host_is_sent_again(store: ProjectStore, target: SSHTarget, project: Path,
                                                  remote_dir: Path) -> None:
    with _stager(store, target) as stager:
        stager.stage_in(None, [project / "runs"], str(remote_dir), base=project)
        (remote_dir / "runs/import/movies/mic_010.mrc").unlink()  # e.g. a scratch clean-up
        report = stager.stage_in(None, [project / "runs"], str(remote_dir), base=project)
    assert report.sent == (str(project / "runs/import/movies/mic_010.mrc"),)


def test_outputs_already_fetched_are_not_fetched_again(store: ProjectStore, target: SSHTarget, tmp_path: Path,
                                                       remote_dir: Path) -> None:
    for index in range(5):
        (remote_dir / f"out_{index}.txt").write_text(f"result {index}\n")
    with _stager(store, target) as stager:
        names = [str(remote_dir / f"out_{i}.txt") for i in range(5)]
        assert len(stager.stage_out(None, names, tmp_path / "back").sent) == 5
        assert stager.stage_out(None, names, tmp_path / "back").sent == ()
        (remote_dir / "out_2.txt").write_text("recomputed\n")
        assert stager.stage_out(None, names, tmp_path / "back").sent == (names[2],)
        assert (tmp_path / "back" / "out_2.txt").read_text() == "recomputed\n"
        with pytest.raises(TransferError, match="not on the host.*missing.txt"):
            stager.stage_out(None, [str(remote_dir / "missing.txt")], tmp_path / "back")


def test_a_host_without_the_python_command_is_reported(store: ProjectStore, target: SSHTarget, project: Path,
                                                       remote_dir: Path) -> None:
    with _stager(store, target, python="python3-not-installed") as stager:
        with pytest.raises(TransferError) as caught:
            stager.stage_in(None, [project / "runs" / "import" / "movies"], str(remote_dir), base=project)
    assert "python3-not-installed" in str(caught.value) and "install python3" in str(caught.value)
    with _stager(store, target, python="python3-not-installed", verify_remote=True) as stager:
        with pytest.raises(RemoteAgentError):
            stager.stage_out(None, [str(remote_dir)], project / "back")


def test_transfer_status_command_reads_the_ledger(store: ProjectStore, target: SSHTarget, project: Path,
                                                  remote_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project_file = project / "project.json"
    project_file.write_text(json.dumps({"name": "p", "store_url": store.url}))
    run = store.runs.create("a", {}, name="ctf")
    with _stager(store, target) as stager:
        stager.stage_in(run.id, [project / "runs"], str(remote_dir), base=project)
    assert orch_main(["transfer", "status", str(project), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["active"] == []
    assert data["recent"][0]["files_done"] == 31 and data["recent"][0]["host"] == "gpu-box"
    assert orch_main(["transfer", "status", str(project), "--run", "ctf"]) == 0
    assert "nothing is being moved now" in capsys.readouterr().out
