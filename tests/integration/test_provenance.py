"""Provenance records and lineage, from runs of the real scheduler on the local host.

A simulated session is copied into the project as raw data, imported, and motion-corrected:
the records must name the software, params, steps and launching user as the store and the
machine know them, fingerprint every file each run wrote and the raw files the import read
(checked against hashes computed here), and the lineage of the micrographs must walk back
through the import to those raw files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from orchestrator.app.provenance import output_lineage, run_provenance
from orchestrator.errors import NotFoundError
from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.provenance.fingerprints import INTERNAL_ENTRIES
from orchestrator.provenance.record import launching_user
from orchestrator.scheduler import daemon, planner
from orchestrator.store import RunState

pytestmark = pytest.mark.integration


def submit(project: Project, protocol: str, name: str, **params: object) -> int:
    with project.open_store() as store:
        return planner.create_run(store, project, discover(), protocol, {k: str(v) for k, v in params.items()},
                                  name=name).id


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def orch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, dict[str, int]]:
    project = Project.create(tmp_path_factory.mktemp("prov") / "proj")
    sim = submit(project, "emtools.simulate", "sim", n_micrographs=2, particles_per_micrograph=10, box=32)
    assert daemon.serve(project, idle_exit_s=0.5, workers=2) == 0
    raw = project.path / "raw"
    raw.mkdir()
    for movie in sorted((project.run_dir("sim") / "movies").glob("*.mrcs")):
        shutil.copy(movie, raw / movie.name)
    imp = submit(project, "emtools.import_movies", "imp", files="raw/*.mrcs", pixel_size=3.0, dose_per_frame=4)
    mc = submit(project, "emtools.motioncorr", "mc", movies="imp.movies")
    pending = submit(project, "emtools.import_movies", "never", files="raw/*.mrcs", pixel_size=3.0)
    with project.open_store() as store:
        store.lifecycle.cancel_run(pending, "not wanted")
    assert daemon.serve(project, idle_exit_s=0.5, workers=2) == 0
    runs = {"sim": sim, "imp": imp, "mc": mc, "never": pending}
    with project.open_store() as store:
        for name in ("sim", "imp", "mc"):
            assert store.runs.get(runs[name]).run_state is RunState.FINISHED, store.runs.get(runs[name]).error
    return project, runs


def test_the_record_names_software_params_steps_and_who_launched_it(session: tuple[Project, dict[str, int]]) -> None:
    project, runs = session
    record = run_provenance(project, "mc")
    with project.open_store() as store:
        run = store.runs.get(runs["mc"])
        steps = {s.name: s for s in store.steps.list(run.id)}
    assert record["format"] == {"name": "em-orchestrator/run-provenance", "version": 1}
    assert record["run"]["params"] == run.params and record["run"]["protocol"] == "emtools.motioncorr"
    assert record["run"]["launched_by"] == launching_user()
    assert record["software"]["libraries"]["numpy"] == numpy.__version__
    assert record["software"]["plugin"]["name"] == "emtools" and record["software"]["plugin"]["version"]
    assert record["software"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert {s["name"]: (s["host"], s["worker"], s["hash"], s["attempt"]) for s in record["steps"]} == {
        name: (s.host, s.worker, s.hash, s.attempt) for name, s in steps.items()}
    assert record["inputs"] == [{"param": "movies", "run_id": runs["imp"], "run": "imp",
                                 "protocol": "emtools.import_movies", "output": "movies"}]
    assert [o["name"] for o in record["outputs"]] == ["micrographs"]


def test_every_file_a_run_wrote_is_fingerprinted(session: tuple[Project, dict[str, int]]) -> None:
    project, _runs = session
    for name in ("sim", "mc"):
        run_dir = project.run_dir(name)
        expected = {p.relative_to(project.path).as_posix(): (p.stat().st_size, sha256(p))
                    for p in run_dir.rglob("*") if p.is_file()
                    and p.relative_to(run_dir).parts[0] not in INTERNAL_ENTRIES}
        written = {f["path"]: (f["size"], f["sha256"]) for f in run_provenance(project, name)["files"]["written"]}
        assert written == expected and expected, name
    assert any(path.endswith(".mrc") for path in written)  # mc's micrographs are among them


def test_the_import_fingerprints_the_raw_files_it_read(session: tuple[Project, dict[str, int]]) -> None:
    project, _runs = session
    files = run_provenance(project, "imp")["files"]
    raw = sorted((project.path / "raw").glob("*.mrcs"))
    assert files["read_raw"] == [{"path": f"raw/{p.name}", "size": p.stat().st_size, "sha256": sha256(p)}
                                 for p in raw]
    assert files["written"] == []  # nothing copied: the sets point at the raw files


def test_lineage_walks_from_the_micrographs_back_to_the_raw_movies(session: tuple[Project, dict[str, int]]) -> None:
    project, runs = session
    nodes = output_lineage(project, "mc", "micrographs")
    assert [(n.run, n.depth, n.outputs_used) for n in nodes] == [("mc", 0, ["micrographs"]), ("imp", 1, ["movies"])]
    assert nodes[0].inputs == [{"param": "movies", "run": "imp", "output": "movies"}]
    assert [f["path"] for f in nodes[1].raw_files] == ["raw/movie_0001.mrcs", "raw/movie_0002.mrcs"]
    with pytest.raises(NotFoundError, match="has no output 'map'; it has: micrographs"):
        output_lineage(project, "mc", "map")


def test_cli_show_and_lineage(session: tuple[Project, dict[str, int]]) -> None:
    project, _runs = session
    shown = orch("show", str(project.path), "mc", "--provenance", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == json.loads(json.dumps(run_provenance(project, "mc"), default=str))
    text = orch("show", str(project.path), "imp", "--provenance")
    assert text.returncode == 0 and "raw/movie_0001.mrcs" in text.stdout and "emtools" in text.stdout
    none = orch("show", str(project.path), "never", "--provenance")
    assert none.returncode == 3 and "run never of project proj has no provenance record: it is cancelled" in none.stderr
    assert "Traceback" not in none.stderr
    lineage = orch("lineage", str(project.path), "mc:micrographs")
    assert lineage.returncode == 0, lineage.stderr
    assert lineage.stdout.index("mc (emtools.motioncorr") < lineage.stdout.index("imp (emtools.import_movies")
    assert "data entered here: 2 raw file(s)" in lineage.stdout
    missing = orch("lineage", str(project.path), "mc:nosuch")
    assert missing.returncode == 3 and "has no output 'nosuch'" in missing.stderr
