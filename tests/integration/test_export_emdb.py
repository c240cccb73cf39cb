"""EMDB deposition bundles (``orch export PROJECT --run RUN --emdb DIR``) from real finished runs.

The project (``export_project``): simulated particles with their true angles in ``raw/``,
imported and reconstructed by emtools (with a 100 Å FSC mask), assessed by emtools.fsc
(default mask), and with RELION installed reconstructed and postprocessed by RELION too.
The bundle must hold the run's map and half maps byte for byte, a mask that reproduces the
FSC curve the run recorded, an FSC XML whose 0.143 crossing is the resolution the run
reported, a 500 x 500 image that shows the map, and the processing back to the raw files.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from export_project import ExportProject, make_export_project

from orchestrator.app.exports import EmdbExport, export_emdb
from orchestrator.app.provenance import run_provenance
from orchestrator.em.mrc import read_header, read_volume
from orchestrator.errors import OrchestratorError
from orchestrator.export.errors import ExportError
from orchestrator.project import Project

pytestmark = pytest.mark.integration

BUNDLE = {"map.mrc", "half_map_1.mrc", "half_map_2.mrc", "mask.mrc", "fsc.xml", "map_image.png", "processing.json",
          "README.txt"}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> ExportProject:
    return make_export_project(tmp_path_factory.mktemp("emdb"))


@pytest.fixture(scope="module")
def rec_bundle(made: ExportProject, tmp_path_factory: pytest.TempPathFactory) -> tuple[EmdbExport, Path]:
    """The bundle of run ``rec`` (emtools.reconstruct), written once for the tests that read it."""
    folder = tmp_path_factory.mktemp("rec") / "deposit"
    return export_emdb(made.project, "rec", folder), folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def orch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def xml_curve(path: Path) -> tuple[ET.Element, np.ndarray, np.ndarray]:
    """The FSC XML read with nothing of ours: root element, x (1/Å) and y per coordinate."""
    root = ET.parse(path).getroot()
    points = root.findall("coordinate")
    x = np.array([float(p.findtext("x") or "nan") for p in points])
    y = np.array([float(p.findtext("y") or "nan") for p in points])
    return root, x, y


def crossing_a(x: np.ndarray, y: np.ndarray, threshold: float = 0.143) -> float:
    """Resolution (Å) at the first fall below ``threshold`` after the first point, interpolated."""
    i = int(np.flatnonzero(y[1:] < threshold)[0]) + 1
    f = x[i - 1] + (y[i - 1] - threshold) / (y[i - 1] - y[i]) * (x[i] - x[i - 1])
    return float(1.0 / f)


def outputs(project: Project, run: str) -> dict[str, object]:
    with project.open_store() as store:
        return {o.name: o for o in store.outputs.list(store.runs.get(run).id)}


def test_the_bundle_of_a_reconstruction(made: ExportProject, rec_bundle: tuple[EmdbExport, Path]) -> None:
    project = made.project
    bundle, folder = rec_bundle
    assert {f.name for f in bundle.files} == BUNDLE == {p.name for p in folder.iterdir()}
    assert all(f.sha256 == sha256(folder / f.name) for f in bundle.files)
    # the map and half maps are the run's files, byte for byte, as its record fingerprinted them
    written = {f["path"]: f["sha256"] for f in run_provenance(project, "rec")["files"]["written"]}
    for name, source in (("map.mrc", "maps/map.mrc"), ("half_map_1.mrc", "maps/half1.mrc"),
                         ("half_map_2.mrc", "maps/half2.mrc")):
        assert sha256(folder / name) == written[f"runs/rec/{source}"], name
    assert bundle.warnings == []
    assert bundle.box == 32 and bundle.pixel_size_a == pytest.approx(4.0)

    # the FSC XML: EMDB's element and axes, and its 0.143 crossing is the resolution the run reported
    root, x, y = xml_curve(folder / "fsc.xml")
    assert root.tag == "fsc" and root.get("xaxis") == "Resolution (A-1)"
    assert root.get("yaxis") == "Correlation Coefficient" and "rec" in (root.get("title") or "")
    volume = outputs(project, "rec")["volume"]
    reported = volume.value["resolution_a"]  # type: ignore[attr-defined]
    assert crossing_a(x, y) == pytest.approx(reported, rel=1e-4)
    assert bundle.resolution_a == pytest.approx(reported, rel=1e-4) and bundle.reported_resolution_a == reported
    recorded = json.loads((project.run_dir("rec") / "fsc.json").read_text())["half_maps"]
    np.testing.assert_allclose(x, recorded["frequency"], atol=1e-6)
    np.testing.assert_allclose(y, recorded["fsc"], atol=1e-6)


def test_the_mask_is_the_one_the_fsc_used(made: ExportProject, rec_bundle: tuple[EmdbExport, Path]) -> None:
    """The mask made by the export, applied to the half maps, gives the curve the run recorded."""
    from emtools.kernels.fsc import fsc

    folder = rec_bundle[1]
    mask = read_volume(folder / "mask.mrc")
    assert read_header(folder / "mask.mrc").voxel_size[0] == pytest.approx(4.0)
    curve = fsc(read_volume(folder / "half_map_1.mrc"), read_volume(folder / "half_map_2.mrc"), 4.0, mask=mask)
    recorded = json.loads((made.project.run_dir("rec") / "fsc.json").read_text())["half_maps"]["fsc"]
    np.testing.assert_allclose(curve.fsc, recorded, atol=1e-5)
    # 1 out to 100 Å / 2 / 4 Å = 12.5 px from the centre (16, 16, 16), 0 past the 4 px edge (16.5 px)
    samples = mask[16, 16, 16], mask[16, 16, 16 + 12], mask[16, 16 + 12, 16 + 12]
    assert samples == pytest.approx((1.0, 1.0, 0.0), abs=1e-6)
    readme = (folder / "README.txt").read_text()
    assert "made by this export" in readme and "radius 12.50 px (50.0 Å)" in readme


def test_the_image_shows_the_map(rec_bundle: tuple[EmdbExport, Path]) -> None:
    from matplotlib.image import imread

    image = imread(rec_bundle[1] / "map_image.png")
    assert image.shape[:2] == (500, 500)
    surface = image[60:190, 40:180, :3]  # the first panel: the surface along Z
    coloured = (surface[..., 2] - surface[..., 0]) > 0.2  # blue surface on white
    assert 0.05 < coloured.mean() < 0.8, "the surface panel should show the map, neither empty nor full"
    assert image[..., :3].std() > 0.1


def test_processing_goes_back_to_the_raw_files(made: ExportProject, rec_bundle: tuple[EmdbExport, Path]) -> None:
    project, folder = made.project, rec_bundle[1]
    document = json.loads((folder / "processing.json").read_text())
    assert [step["run"] for step in document["processing"]] == ["imp", "rec"]
    imp, rec = document["processing"]
    assert imp["protocol"] == "emtools.import_particles" and imp["params"]["star_file"] == "raw/particles.star"
    assert {f["path"]: f["sha256"] for f in imp["raw_files"]} == {
        f"raw/{name}": sha256(project.path / "raw" / name) for name in ("a.mrcs", "b.mrcs")}
    assert rec["inputs"] == ["particles = imp.particles"] and rec["params"]["mask_diameter"] == 100.0
    assert rec["plugin"]["name"] == "emtools" and rec["plugin"]["version"]
    assert document["run"]["name"] == "rec" and document["map"]["source"] == "runs/rec/maps/map.mrc"
    assert str(project.path) not in (folder / "processing.json").read_text()
    readme = (folder / "README.txt").read_text()
    assert "1. imp (emtools.import_particles" in readme and "2. rec (emtools.reconstruct" in readme
    assert "raw/a.mrcs  sha256 " in readme and "voxel size            4.0000 Å" in readme


def test_an_fsc_run_deposits_the_maps_it_assessed_with_its_own_mask(made: ExportProject, tmp_path: Path) -> None:
    from emtools.kernels.fsc import fsc

    bundle = export_emdb(made.project, "fsc", tmp_path / "deposit")
    folder = tmp_path / "deposit"
    assert sha256(folder / "map.mrc") == sha256(made.project.run_dir("rec") / "maps" / "map.mrc")
    _root, x, y = xml_curve(folder / "fsc.xml")
    assert crossing_a(x, y) == pytest.approx(outputs(made.project, "fsc")["fsc"].value["resolution_0143"],  # type: ignore[attr-defined]
                                             rel=1e-4)
    curve = fsc(read_volume(folder / "half_map_1.mrc"), read_volume(folder / "half_map_2.mrc"), 4.0,
                mask=read_volume(folder / "mask.mrc"))
    np.testing.assert_allclose(curve.fsc, y, atol=1e-5)  # the default mask: 84 % of the box
    assert bundle.warnings == []


@pytest.mark.parametrize("run", ["rrec", "post"])
def test_relion_runs(made: ExportProject, tmp_path: Path, run: str) -> None:
    if not made.relion:
        pytest.skip("RELION is not installed")
    bundle = export_emdb(made.project, run, tmp_path / "deposit")
    folder = tmp_path / "deposit"
    assert sha256(folder / "half_map_1.mrc") == sha256(made.project.run_dir("rrec") / "Reconstruct" / "half1.mrc")
    _root, x, y = xml_curve(folder / "fsc.xml")
    reported = outputs(made.project, run)["volume"].value["resolution_a"]  # type: ignore[attr-defined]
    if run == "rrec":  # relion_image_handler's curve, read with the same interpolation
        assert crossing_a(x, y) == pytest.approx(reported, rel=2e-3)
        assert "mask.mrc" not in {f.name for f in bundle.files}
        assert "computed without a mask" in (folder / "README.txt").read_text()
    else:  # RELION reports the shell next to the crossing, without interpolating: said in a note
        assert sha256(folder / "mask.mrc") == sha256(made.project.run_dir("post") / "PostProcess" / "mask.mrc")
        i = int(np.flatnonzero(y[1:] < 0.143)[0]) + 1
        assert 1 / x[i] - 0.01 <= reported <= 1 / x[i - 1] + 0.01
        assert crossing_a(x, y) == pytest.approx(bundle.resolution_a, rel=1e-4)
        assert bundle.warnings == [] and any("without interpolating" in note for note in bundle.notes)


def test_refusals_name_the_run_or_folder_and_touch_nothing(made: ExportProject, tmp_path: Path) -> None:
    project = made.project
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"taken is not empty \(it holds notes.txt\)"):
        export_emdb(project, "rec", taken)
    assert [p.name for p in taken.iterdir()] == ["notes.txt"] and (taken / "notes.txt").read_text() == "mine"
    with pytest.raises(ExportError, match=r"run imp \(emtools.import_particles\) makes no map with half maps"):
        export_emdb(project, "imp", tmp_path / "new")
    assert not (tmp_path / "new").exists()
    with pytest.raises(OrchestratorError, match="nosuch"):
        export_emdb(project, "nosuch", tmp_path / "new")


def test_a_failed_export_removes_what_it_wrote(made: ExportProject, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.export import emdb

    def broken(*args: object, **kwargs: object) -> None:
        raise ExportError("the image cannot be drawn")

    monkeypatch.setattr(emdb, "write_map_image", broken)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportError, match="cannot be drawn"):
        export_emdb(made.project, "rec", empty)
    assert empty.is_dir() and list(empty.iterdir()) == []  # the folder was there before: it stays, empty
    with pytest.raises(ExportError):
        export_emdb(made.project, "rec", tmp_path / "made" / "here")
    assert not (tmp_path / "made" / "here").exists()


def test_cli(made: ExportProject, tmp_path: Path) -> None:
    done = orch("export", str(made.project.path), "--run", "post" if made.relion else "rec", "--emdb",
                str(tmp_path / "d"), "--json")
    assert done.returncode == 0, done.stderr
    assert {f["name"] for f in json.loads(done.stdout)["files"]} == BUNDLE
    text = orch("export", str(made.project.path), "--run", "fsc", "--emdb", str(tmp_path / "e"))
    assert text.returncode == 0 and "resolution 8." in text.stdout and "README.txt" in text.stdout
    again = orch("export", str(made.project.path), "--run", "rec", "--emdb", str(tmp_path / "d"))
    assert again.returncode == 1 and "is not empty" in again.stderr and "Traceback" not in again.stderr
    missing = orch("export", str(made.project.path), "--emdb", str(tmp_path / "f"))
    assert missing.returncode == 2 and "--emdb DIR needs --run RUN" in missing.stderr
    assert orch("export", "--help").stdout.count("orch export myproj") >= 4
