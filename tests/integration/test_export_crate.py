"""Workflow Run RO-Crates (``orch export PROJECT --crate DIR``) of real finished runs, checked
by a real validator: rocrate-validator (PyPI ``roc-validator``) against its
``workflow-run-crate-0.5`` profile, which also applies Process Run Crate 0.5, Workflow
RO-Crate 1.0 and RO-Crate 1.1.

The validator reads the RO-Crate 1.1 JSON-LD context from w3id.org; the tests run without a
network, so they serve it the published context, kept in ``tests/data/ro-crate-1.1-context.jsonld``
(CC0), and fail on any other address it asks for.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from export_project import ExportProject, make_export_project

from orchestrator.app.exports import export_crate
from orchestrator.app.provenance import run_provenance
from orchestrator.errors import NotFoundError
from orchestrator.export.errors import ExportError
from orchestrator.provenance.record import launching_user

pytestmark = pytest.mark.integration

CONTEXT_1_1 = Path(__file__).parents[1] / "data" / "ro-crate-1.1-context.jsonld"
PROFILES = {"https://w3id.org/ro/wfrun/process/0.5", "https://w3id.org/ro/wfrun/workflow/0.5",
            "https://w3id.org/workflowhub/workflow-ro-crate/1.0"}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> ExportProject:
    return make_export_project(tmp_path_factory.mktemp("crate"))


@pytest.fixture(scope="module")
def crate(made: ExportProject, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every finished run, files referenced (not copied): written once, read by several tests."""
    folder = tmp_path_factory.mktemp("crate") / "crate"
    export_crate(made.project, folder)
    return folder


def validate(folder: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The REQUIRED-level issues rocrate-validator finds in the crate at ``folder`` (none: it conforms)."""
    import rdflib.plugins.shared.jsonld.context as jsonld_context
    from rocrate_validator import services
    from rocrate_validator.utils.http import HttpRequester

    contexts = {"https://w3id.org/ro/crate/1.1/context": json.loads(CONTEXT_1_1.read_text())}

    class Response:
        status_code = 200
        headers = {"Content-Type": "application/ld+json"}

        def __init__(self, document: dict[str, Any]) -> None:
            self.document = document

        def json(self) -> dict[str, Any]:
            return self.document

    def known(url: object) -> dict[str, Any]:
        if str(url) not in contexts:
            raise AssertionError(f"the validator asked for {url}: the tests have no network and do not serve it")
        return contexts[str(url)]

    monkeypatch.setattr(HttpRequester, "get", lambda self, url, *a, **k: Response(known(url)), raising=False)
    monkeypatch.setattr(jsonld_context, "source_to_json", lambda source, *a, **k: (known(source), None))
    settings = services.ValidationSettings(rocrate_uri=str(folder), profile_identifier="workflow-run-crate-0.5",
                                           requirement_severity="REQUIRED", no_cache=True)
    result = services.validate(settings)
    issues = [f"{issue.check.identifier}: {issue.message} ({issue.violatingEntity})" for issue in result.get_issues()]
    assert result.passed() == (not issues)
    return issues


def graph(folder: Path) -> dict[str, dict[str, Any]]:
    metadata = json.loads((folder / "ro-crate-metadata.json").read_text())
    return {entity["@id"]: entity for entity in metadata["@graph"]}


def ids(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value] if value else []
    return [item["@id"] for item in items]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_crate_validates_as_a_workflow_run_crate(crate: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert validate(crate, monkeypatch) == []
    entities = graph(crate)
    root = entities["./"]
    assert set(ids(root["conformsTo"])) == PROFILES
    assert root["mainEntity"] == {"@id": "workflow.json"} and root["license"]


def test_the_validator_does_check(crate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A control: the same crate without its license, and without the action that ran the
    workflow, is refused (so an empty list above means the checks ran)."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(crate, broken)
    metadata = json.loads((broken / "ro-crate-metadata.json").read_text())
    for entity in metadata["@graph"]:
        if entity["@id"] == "./":
            del entity["license"]
    metadata["@graph"] = [e for e in metadata["@graph"] if e["@id"] != "#workflow-run"]
    (broken / "ro-crate-metadata.json").write_text(json.dumps(metadata))
    issues = "\n".join(validate(broken, monkeypatch))
    assert "license" in issues and "mainEntity as its instrument" in issues


def test_the_workflow_and_its_run(made: ExportProject, crate: Path) -> None:
    entities = graph(crate)
    workflow = entities["workflow.json"]
    assert {"File", "SoftwareSourceCode", "ComputationalWorkflow"} <= set(workflow["@type"])
    document = json.loads((crate / "workflow.json").read_text())
    assert document["format"] == {"name": "em-orchestrator/workflow", "version": 2}
    names = ["imp", "rec", "fsc"] + (["rimp", "rrec", "post"] if made.relion else [])
    assert sorted(run["name"] for run in document["runs"]) == sorted(names)
    main = entities["#workflow-run"]
    assert main["@type"] == "CreateAction" and main["instrument"] == {"@id": "workflow.json"}
    # the data that entered: the raw particle stacks; what came out: outputs no exported run read further
    assert {entities[i]["alternateName"] for i in ids(main["object"])} == {"raw/a.mrcs", "raw/b.mrcs"}
    assert "#runs/fsc/fsc.json" in ids(main["result"]) and "#runs/rec/maps/map.mrc" not in ids(main["result"])
    assert main["startTime"].endswith("+00:00") and main["startTime"] <= main["endTime"]
    assert set(ids(entities["./"]["mentions"])) == {"#workflow-run", *(f"#run-{name}" for name in names)}


def test_one_action_per_run_with_inputs_outputs_and_fingerprints(made: ExportProject, crate: Path) -> None:
    entities = graph(crate)
    record = run_provenance(made.project, "rec")
    action = entities["#run-rec"]
    assert action["@type"] == "CreateAction"
    tool = entities[action["instrument"]["@id"]]
    assert tool["@type"] == "SoftwareApplication" and tool["name"] == "emtools.reconstruct"
    assert tool["softwareVersion"] == record["software"]["plugin"]["version"]
    assert entities[action["agent"]["@id"]] == {"@id": action["agent"]["@id"], "@type": "Person",
                                                "name": launching_user()}
    assert action["startTime"] == record["run"]["started_at"][:19] + "+00:00"
    # object: the particle set it read, and every param
    objects = ids(action["object"])
    assert "#output-imp.particles" in objects
    params = {entities[i]["name"]: entities[i]["value"] for i in objects if entities[i]["@type"] == "PropertyValue"}
    assert params == record["run"]["params"] == {**params, "mask_diameter": 100.0}
    # result: every file the run wrote, with the SHA-256 its record has
    results = {entities[i]["alternateName"]: entities[i] for i in ids(action["result"]) if i.startswith("#runs/")}
    assert {path: (e["sha256"], int(e["contentSize"])) for path, e in results.items()} == {
        f["path"]: (f["sha256"], f["size"]) for f in record["files"]["written"]}
    assert sha256(made.project.path / "runs/rec/maps/map.mrc") == results["runs/rec/maps/map.mrc"]["sha256"]
    # its provenance record is in the crate, about the action
    kept = entities["provenance/rec.json"]
    assert kept["about"] == {"@id": "#run-rec"}
    assert json.loads((crate / "provenance" / "rec.json").read_text()) == json.loads(json.dumps(record))
    # the import read the raw files: they are named with their fingerprints, and not copied
    assert "#raw/b.mrcs" in ids(entities["#run-imp"]["object"])
    raw = entities["#raw/b.mrcs"]
    assert raw["sha256"] == sha256(made.project.path / "raw/b.mrcs") and not (crate / "raw").exists()


def test_no_local_paths_and_no_mail_addresses(made: ExportProject, crate: Path) -> None:
    text = (crate / "ro-crate-metadata.json").read_text() + (crate / "workflow.json").read_text()
    assert str(made.project.path) not in text and "@" not in text.replace('"@', "")


def test_with_data_the_files_are_copied_and_still_validate(made: ExportProject, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "full"
    summary = export_crate(made.project, folder, runs=["imp", "rec"], with_data=True, license="CC-BY-4.0")
    assert summary.runs == ["imp", "rec"] and summary.copied_files > 0 and summary.warnings == []
    assert validate(folder, monkeypatch) == []
    entities = graph(folder)
    copied = entities["runs/rec/maps/half1.mrc"]
    assert copied["@type"] == "File" and copied["sha256"] == sha256(folder / "runs/rec/maps/half1.mrc")
    assert sha256(folder / "raw/a.mrcs") == sha256(made.project.path / "raw/a.mrcs")
    assert {"@id": "runs/rec/maps/half1.mrc"} in entities["./"]["hasPart"]
    assert entities["./"]["license"] == {"@id": "https://spdx.org/licenses/CC-BY-4.0"}
    assert "#run-fsc" not in entities


def test_refusals(made: ExportProject, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="is not empty"):
        export_crate(made.project, taken)
    assert (taken / "keep.txt").read_text() == "mine" and len(list(taken.iterdir())) == 1
    with pytest.raises(NotFoundError, match="nosuch"):
        export_crate(made.project, tmp_path / "a", runs=["nosuch"])
    with made.project.open_store() as store:
        from orchestrator.plugins import discover
        from orchestrator.scheduler import planner

        planner.create_run(store, made.project, discover(), "emtools.fsc", {"volume": "rec.volume"}, name="later")
    with pytest.raises(ExportError, match=r"run later has no provenance record \(it is"):
        export_crate(made.project, tmp_path / "b", runs=["rec", "later"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli(made: ExportProject, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "export", str(made.project.path), "--crate",
                           str(tmp_path / "c"), "--runs", "imp,rec", "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"] == ["imp", "rec"]
    bad = subprocess.run([sys.executable, "-m", "orchestrator.cli", "export", str(made.project.path), "--crate",
                          str(tmp_path / "d"), "--run", "rec"], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "--run goes with --emdb" in bad.stderr and "Traceback" not in bad.stderr
