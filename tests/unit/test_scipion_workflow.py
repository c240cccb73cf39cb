"""Scipion workflows and templates converted to our workflow format (orchestrator.interop.scipion).

The fixtures in tests/data/scipion were written by real Scipion 3.11 (see their README):
each converts to runs that our workflow parser takes and our protocols validate once the
open inputs are filled, with Scipion's params in our units; a protocol with no equivalent
is left out with its reason and the rest is imported; malformed files are refused with a
WorkflowError naming the file and the Scipion protocol, and nothing else escapes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fuzz_support import FUZZ, our_error_or_value
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.interop.scipion import (
    ScipionConversion,
    convert_scipion_workflow,
    decode_scipion_text,
    is_scipion_workflow,
    load_scipion_file,
)
from orchestrator.interop.scipion.mapping import MAPPINGS
from orchestrator.interop.scipion.rules import ProtocolMap
from orchestrator.interop.scipion.units import ConversionProblem, bin_factor, gpu_count, scanner_pixel_size
from orchestrator.objects.params import PointerParam
from orchestrator.plugins import PluginRegistry, discover
from orchestrator.workflow import Workflow, WorkflowError, parse_workflow

DATA = Path(__file__).resolve().parents[1] / "data" / "scipion"
SCHEMA = Path(__file__).resolve().parents[2] / "orchestrator" / "workflow" / "schemas" / "workflow-v2.schema.json"
FIXTURES = ["spa_relion.json", "unmappable_cryolo.json", "xmipp_handwritten.json", "spa_template.json.template"]


@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    return discover()


def convert(name: str, registry: PluginRegistry) -> ScipionConversion:
    loaded = load_scipion_file(DATA / name)
    return convert_scipion_workflow(loaded.document, DATA / name, registry, description=loaded.description)


def runs_by_name(conversion: ScipionConversion) -> dict[str, dict[str, Any]]:
    return {run["name"]: run for run in conversion.workflow["runs"]}


def notes_of(conversion: ScipionConversion, run: str) -> list[str]:
    return [note for note in conversion.notes if note.startswith(f"run {run} ")]


def checked(conversion: ScipionConversion, name: str, tmp_path: Path) -> Workflow:
    """The converted document read by our workflow parser, every open input given: a file that
    exists for a path, a pointer for a pointer without default, the default otherwise."""
    jsonschema.validate(conversion.workflow, json.loads(SCHEMA.read_text()))
    workflow = parse_workflow(conversion.workflow, DATA / name)
    existing = tmp_path / "given.mrc"
    existing.write_bytes(b"")
    given = {name: str(existing) if item.type == "path" else "12.coordinates"
             for name, item in workflow.inputs.items() if item.type == "path" or not item.has_default}
    return workflow.filled(given)


@pytest.mark.parametrize("name", FIXTURES)
def test_each_fixture_converts_to_runs_that_parse_validate_and_point_backwards(
        name: str, registry: PluginRegistry, tmp_path: Path) -> None:
    conversion = convert(name, registry)
    workflow = conversion.workflow
    assert workflow["format"] == {"name": "em-orchestrator/workflow", "version": 2}
    assert workflow["source"]["kind"] == "scipion" and workflow["source"]["file"] == name
    outputs: dict[str, dict[str, str]] = {}
    for run in checked(conversion, name, tmp_path).runs:
        protocol = registry.protocol(run.protocol)
        protocol.validate(run.params, base_dir=tmp_path)
        for param in protocol.params:
            value = run.params.get(param.name)
            if isinstance(param, PointerParam) and isinstance(value, str) and not value.startswith("12."):
                producer, output = value.rsplit(".", 1)
                assert outputs[producer][output] == param.type_name, (run.name, param.name, value)
        outputs[run.name] = dict(protocol.outputs)


def test_a_whole_spa_chain_maps_with_its_units(registry: PluginRegistry) -> None:
    conversion = convert("spa_relion.json", registry)
    runs = runs_by_name(conversion)
    assert [(run["name"], run["protocol"]) for run in conversion.workflow["runs"]] == [
        ("import_movies", "emtools.import_movies"), ("motion_correction", "emtools.motioncorr"),
        ("ctffind", "emtools.ctffind"), ("auto_picking_LoG", "emtools.pick"),
        ("particles_extraction", "emtools.extract"), ("2D_classification", "relion.class2d"),
        ("3D_classification", "relion.class3d"), ("3D_auto_refine", "relion.autorefine"),
        ("post_processing", "relion.postprocess"), ("reconstruct", "relion.reconstruct")]
    assert runs["import_movies"]["params"] == {"files": {"$input": "import_movies.files"}, "voltage": 300.0,
                                               "cs": 2.0, "amplitude_contrast": 0.1, "pixel_size": 1.34,
                                               "dose_per_frame": 1.0}
    assert runs["motion_correction"]["params"] == {"dose_weighting": True, "bfactor": 150.0,
                                                   "movies": "import_movies.movies"}
    assert runs["ctffind"]["params"] == {"tile_size": 512, "min_resolution": 30.0, "max_resolution": 4.0,
                                         "defocus_min": 5000.0, "defocus_max": 40000.0, "max_astigmatism": 500.0,
                                         "micrographs": "motion_correction.micrographs"}
    assert runs["auto_picking_LoG"]["params"]["particle_diameter"] == 165.0  # (150 + 180) / 2 Å
    # 360 px boxes re-scaled to 120: binning 3; background diameter 300 px -> radius 50 output px
    assert runs["particles_extraction"]["params"] == {
        "box_size": 360, "bin_factor": 3, "invert_contrast": True, "normalize": True, "background_radius": 50.0,
        "coordinates": "auto_picking_LoG.coordinates", "micrographs": "ctffind.micrographs"}
    class2d = runs["2D_classification"]["params"]
    assert (class2d["psi_step"], class2d["offset_step"], class2d["gpus"], class2d["mpi"], class2d["threads"]) == (
        12.0, 2.0, 2, 3, 4)  # Scipion's 6° and 1 px oversampled steps, GPUs "0:1"
    refine = runs["3D_auto_refine"]["params"]
    assert (refine["symmetry"], refine["healpix_order"], refine["local_healpix_order"], refine["ini_high"],
            refine["particle_diameter"], refine["gpus"]) == ("D2", 2, 4, 40.0, 300.0, 0)
    assert runs["3D_classification"]["params"]["healpix_order"] == 1
    # the volume import is one input, the reference file of both runs that used it
    assert refine["reference_file"] == runs["3D_classification"]["params"]["reference_file"] == {
        "$input": "import_initial_model.reference_file"}
    assert conversion.workflow["inputs"]["import_initial_model.reference_file"]["default"] == \
        "/data/empiar-10028/initial_model.mrc"
    # the mask protocol's settings are relion.postprocess's own mask params
    assert runs["post_processing"]["params"] == {
        "auto_bfactor": False, "bfactor": -120.0, "volume": "3D_auto_refine.volume", "mask_lowpass": 12.0,
        "mask_threshold": 0.015, "mask_extend": 4, "mask_soft_edge": 8}
    assert runs["reconstruct"]["params"] == {"symmetry": "D2", "ctf": True, "mpi": 2,
                                             "particles": "3D_auto_refine.particles"}
    assert [(o.scipion_id, o.class_name) for o in conversion.omitted] == [
        ("346", "ProtImportVolumes"), ("563", "ProtRelionCreateMask3D")]
    assert "carried into run(s) 3D_classification, 3D_auto_refine" in conversion.omitted[0].reason
    assert any("psi_step=12.0 from inplaneAngularSamplingDeg=6.0, oversampling=1" in n
               for n in notes_of(conversion, "2D_classification"))


def test_an_unmappable_protocol_is_left_out_and_the_rest_imported(registry: PluginRegistry) -> None:
    conversion = convert("unmappable_cryolo.json", registry)
    runs = runs_by_name(conversion)
    assert list(runs) == ["import_movies", "movie_alignment", "ctf_estimation", "particles_extraction",
                          "preprocess_particles", "2D_classification"]
    [omitted] = conversion.omitted
    assert (omitted.scipion_id, omitted.label, omitted.class_name) == (
        "201", "sphire - cryolo picking", "SphireProtCRYOLOPicking")
    assert "crYOLO" in omitted.reason and omitted.left_open == ("particles_extraction.coordinates",)
    # its dependent keeps the rest of its inputs and asks for the picks
    assert runs["particles_extraction"]["params"]["coordinates"] == {"$input": "particles_extraction.coordinates"}
    assert runs["particles_extraction"]["params"]["micrographs"] == "ctf_estimation.micrographs"
    spec = conversion.workflow["inputs"]["particles_extraction.coordinates"]
    assert spec["type"] == "pointer" and "default" not in spec and "SetOfCoordinates" in spec["help"]
    assert runs["2D_classification"]["params"]["particles"] == "preprocess_particles.particles"
    assert runs["import_movies"]["params"]["pixel_size"] == pytest.approx(14.0 * 1e4 / 105000)
    notes = "\n".join(conversion.notes)
    for expected in ("binFactor=2.0 not carried over", "patchX=5 not carried over", "doseInitial=0.5",
                     "gainFile='/data/krios/gain.mrc'", "not MRC stacks", "VDAM"):
        assert expected in notes


def test_xmipp_units_and_a_default_past_a_left_out_filter(registry: PluginRegistry) -> None:
    conversion = convert("xmipp_handwritten.json", registry)
    runs = runs_by_name(conversion)
    ctf = runs["ctf_estimation"]["params"]
    assert (ctf["defocus_min"], ctf["defocus_max"]) == (3000.0, 55000.0)  # 0.3 and 5.5 µm
    assert "min_resolution" not in ctf
    assert any("lowRes=0.05 not carried over: a digital frequency" in n for n in notes_of(conversion, "ctf_estimation"))
    assert runs["cl2d"]["params"] == {"n_classes": 32, "iterations": 12, "particles": {"$input": "cl2d.particles"}}
    assert conversion.workflow["inputs"]["cl2d.particles"]["default"] == "particles_extraction.particles"
    assert runs["resolution_3D"]["params"] == {"volume": "reconstruct_fourier.volume",
                                               "reference_file": {"$input": "import_reference_map.reference_file"}}
    assert runs["3D_auto_refine"]["params"]["reference_file"] == {"$input": "import_reference_map.reference_file"}
    assert {o.class_name: o.left_open for o in conversion.omitted} == {
        "ProtImportVolumes": (), "XmippProtScreenParticles": ("cl2d.particles",)}


def test_template_fields_become_open_inputs_in_our_units(registry: PluginRegistry) -> None:
    conversion = convert("spa_template.json.template", registry)
    inputs, runs = conversion.workflow["inputs"], runs_by_name(conversion)
    assert conversion.workflow["description"].startswith("Single-particle template: movies to 2D classes")
    assert inputs["pixel_size"] == {"label": "Pixel size (Å/px)", "type": "float", "default": 1.1,
                                    "help": "Scipion template field(s) '~Pixel size (Å/px)|1.1|4|pixel_size~' for "
                                            "pixel_size of run import_movies"}
    assert runs["import_movies"]["params"]["pixel_size"] == {"$input": "pixel_size"}
    assert inputs["Voltage_kV"]["default"] == 300.0 and inputs["Dose_per_frame_e"]["default"] == 1.2
    assert inputs["import_movies.files"]["default"] == "/data/movies/*.mrcs"
    assert inputs["Number_of_2D_classes"] == {  # the field written outside quotes
        "label": "Number of 2D classes", "type": "int", "default": 50,
        "help": "Scipion template field(s) '~Number of 2D classes|50|3~' for classes of run 2D_classification"}
    assert runs["2D_classification"]["params"]["classes"] == {"$input": "Number_of_2D_classes"}
    # converted values are asked in our terms: psi_step is twice Scipion's 6°, the diameter the middle
    assert inputs["_2D_classification.psi_step"]["default"] == 12.0
    assert inputs["auto_picking_LoG.particle_diameter"]["default"] == 120.0
    assert inputs["MPI_processes"]["type"] == "int"


def test_a_protocol_whose_equivalent_is_not_installed_is_left_out(registry: PluginRegistry) -> None:
    emtools_only = PluginRegistry(plugins={"emtools": registry.plugin("emtools")})
    conversion = convert("spa_relion.json", emtools_only)
    reasons = {o.class_name: o.reason for o in conversion.omitted}
    assert reasons["ProtRelionClassify2D"] == "its equivalent relion.class2d is not installed (plugin 'relion')"
    assert [run["protocol"] for run in conversion.workflow["runs"]] == [
        "emtools.import_movies", "emtools.motioncorr", "emtools.ctffind", "emtools.pick", "emtools.extract"]


def protocol(class_name: str, pid: str = "2", **params: Any) -> dict[str, Any]:
    return {"object.className": class_name, "object.id": pid, "object.label": f"{class_name} {pid}",
            "object.comment": "", "_useQueue": False, "_prerequisites": "", **params}


def test_settings_with_no_equivalent_leave_the_protocol_out_with_the_reason(registry: PluginRegistry) -> None:
    document = [protocol("ProtImportParticles", "2", importFrom=1, emxFile="/x.emx"),
                protocol("ProtRelionClassify2D", "3", doContinue=True, inputParticles="2.outputParticles"),
                protocol("MyLabProtMagic", "4", inputParticles="2.outputParticles"),
                protocol("ProtRelionClassify2D", "5", inputParticles="4.outputParticles")]
    conversion = convert_scipion_workflow(document, Path("wf.json"), registry)
    assert [(o.scipion_id, o.reason) for o in conversion.omitted] == [
        ("2", "imports particles from EMX files (importFrom 1); emtools.import_particles reads RELION STAR only"),
        ("3", "continues an earlier RELION run (doContinue); a workflow's runs start afresh"),
        ("4", "no equivalent protocol")]
    assert [run["name"] for run in conversion.workflow["runs"]] == ["ProtRelionClassify2D_5"]
    with pytest.raises(WorkflowError, match="none of the 3 Scipion protocols of the file has an equivalent"):
        convert_scipion_workflow(document[:3], Path("wf.json"), registry)


def test_pointers_outside_the_file_and_to_outputs_without_equivalent_are_left_open(registry: PluginRegistry) -> None:
    document = [protocol("ProtImportMovies", "2", filesPath="/m", filesPattern="*.mrcs"),
                protocol("ProtMotionCorr", "3", inputMovies="2.outputMovies", _prerequisites="2"),
                protocol("CistemProtCTFFind", "4", inputMicrographs="3.outputMovies"),
                protocol("ProtRelionExtractParticles", "5", inputCoordinates="99.outputCoordinates", boxSize=64)]
    conversion = convert_scipion_workflow(document, Path("wf.json"), registry)
    runs = runs_by_name(conversion)
    names = list(runs)
    assert runs[names[1]]["params"]["movies"] == f"{names[0]}.movies"
    assert runs[names[2]]["params"]["micrographs"] == {"$input": f"{names[2]}.micrographs"}
    assert runs[names[3]]["params"]["coordinates"] == {"$input": f"{names[3]}.coordinates"}
    notes = "\n".join(conversion.notes)
    assert "the output 'outputMovies' of Scipion protocol 3" in notes
    assert "points to Scipion protocol 99, which is not in the file" in notes
    assert "waited for Scipion protocol(s) 2" in notes


def test_run_names_come_from_labels_and_stay_unique(registry: PluginRegistry) -> None:
    document = [protocol("ProtImportMovies", "2", filesPath="/m") | {"object.label": "relion - import/movies é"},
                protocol("ProtImportMovies", "3", filesPath="/n") | {"object.label": "relion - import/movies é"},
                protocol("ProtImportMovies", "4", filesPath="/o") | {"object.label": "12"},
                protocol("ProtImportMovies", "5", filesPath="/p") | {"object.label": None}]
    names = [run["name"] for run in convert_scipion_workflow(document, Path("w.json"), registry).workflow["runs"]]
    assert names == ["import_movies", "import_movies-2", "run-12", "ProtImportMovies"]


@pytest.mark.parametrize(("document", "message"), [
    ({"runs": []}, "wf.json: not a Scipion workflow: expected a JSON list of protocols"),
    ([], "wf.json: the Scipion workflow has no protocols"),
    (["x"], "wf.json: protocol 1 of the list: expected an object"),
    ([{"object.id": "2", "object.label": "import"}], "wf.json: protocol 1 of the list ('import'): "
                                                      '"object.className" is missing'),
    ([protocol("ProtImportMovies") | {"object.id": "two"}], '"object.id" is missing or not a number'),
    ([protocol("ProtImportMovies"), protocol("ProtMotionCorr")], "object.id 2 is also the id of protocol 1"),
    ([protocol("ProtImportMovies"), protocol("ProtMotionCorr", "3", inputMovies="movies of 2")],
     "wf.json: Scipion protocol 3 ('ProtMotionCorr 3', ProtMotionCorr): param 'inputMovies': bad pointer "
     "'movies of 2'"),
    ([protocol("ProtImportMovies", samplingRate="~Pixel size|1.1~")],
     "wf.json: Scipion protocol 2 ('ProtImportMovies 2', ProtImportMovies): param 'samplingRate': template field "
     "'~Pixel size|1.1~' has no type"),
    ([protocol("ProtImportMovies", samplingRate="~Pixel size|1.1|decimal~")], "type 'decimal' is not one of"),
    ([protocol("ProtImportMovies", samplingRate="~ |1.1|4~")], "has no label"),
    ([protocol("ProtImportMovies", samplingRate="~Pixel size|big|4~")], "default 'big' is not a finite number"),
    ([protocol("ProtRelionPreprocessParticles", "2", inputParticles="3.outputParticles"),
      protocol("ProtRelionPreprocessParticles", "3", inputParticles="2.outputParticles")], "in a cycle"),
])
def test_malformed_files_name_the_file_and_the_protocol(document: Any, message: str,
                                                         registry: PluginRegistry) -> None:
    with pytest.raises(WorkflowError) as caught:
        convert_scipion_workflow(document, Path("wf.json"), registry)
    assert message in str(caught.value)
    assert str(caught.value).startswith("wf.json")


@pytest.mark.parametrize(("text", "message"), [
    ("[{", "x.json: not valid JSON"),
    ('[{"object.className": "ProtImportMovies", "v": ~oops~}]', "a '~' outside quotes at character"),
    ('[{"n": NaN}]', "NaN is not a JSON value"),
])
def test_unreadable_text_names_the_file(text: str, message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        decode_scipion_text(text, Path("x.json"))


def test_is_scipion_workflow() -> None:
    assert is_scipion_workflow(json.loads((DATA / "spa_relion.json").read_text()))
    assert is_scipion_workflow([{"object.className": "X"}, "broken"])
    assert not is_scipion_workflow({"runs": []})
    assert not is_scipion_workflow([])
    assert not is_scipion_workflow([{"name": "x"}])


def test_unit_conversions() -> None:
    assert scanner_pixel_size(14.0, 105000) == pytest.approx(1.3333333)
    assert gpu_count(True, "0,1:2") == 3 and gpu_count(True, "") == 1 and gpu_count(False, "0") == 0
    assert bin_factor(360, 120) == 3
    with pytest.raises(ConversionProblem, match="no integer binning"):
        bin_factor(360, 128)


@pytest.mark.parametrize("entry", list(MAPPINGS.values()), ids=list(MAPPINGS))
def test_the_table_names_params_and_outputs_our_protocols_have(entry: ProtocolMap, registry: PluginRegistry) -> None:
    ours = registry.protocol(entry.protocol)
    declared = {param.name for param in ours.params}
    rules = [*entry.params, *(rule for link in entry.links for rules in link.folds.values() for rule in rules)]
    assert {rule.ours for rule in rules} <= declared
    assert {link.ours for link in entry.links if link.ours} <= declared
    assert set(entry.outputs.values()) <= set(ours.outputs)


# ---------------------------------------------------------------------------- fuzzing
REAL = [json.loads(json.dumps(load_scipion_file(DATA / name).document)) for name in FIXTURES]
HOSTILE = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                    st.sampled_from(["2.outputMovies", "67.", "9" * 5000, "~a|1|3~", "~a|x|3~", "~a|1|9~", "~|1|4~",
                                     "-1", "1e999", "0:1", "c1", "%(HOME)s/x", "5.outputCTF.3", "~a|~b|2~|0~"]),
                    st.lists(st.sampled_from(["2.outputMovies", "x"]), max_size=2),
                    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A real Scipion file with some values, keys or protocols made hostile."""
    document = copy.deepcopy(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 6))):
        entry = document[draw(st.integers(0, len(document) - 1))]
        if not isinstance(entry, dict) or not entry:
            continue
        key = draw(st.sampled_from(sorted(entry)))
        action = draw(st.integers(0, 9))
        if action == 0:
            del entry[key]
        elif action == 1:
            document[document.index(entry)] = draw(HOSTILE)
        else:
            entry[key] = draw(HOSTILE)
    return document


documents = st.one_of(mutated(), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6))


@FUZZ
@given(document=documents)
def test_any_document_converts_or_raises_a_workflow_error_naming_the_file(
        registry: PluginRegistry, document: Any) -> None:
    path = Path("fuzzed.json")
    outcome = our_error_or_value(lambda: convert_scipion_workflow(document, path, registry), WorkflowError,
                                 [str(path)])
    if isinstance(outcome, ScipionConversion):  # what it makes is a workflow our parser reads
        parse_workflow(json.loads(json.dumps(outcome.workflow)), path)


@FUZZ
@given(text=st.one_of(st.text(max_size=80), st.sampled_from([
    "desc\n[\n{\"a\": ~x|1|3~}\n]", "[\n{\"a\": \"~\"}]", "[{\"a\": ~x|1|3", "\n".join(["x"] * 5)])))
def test_any_text_decodes_or_raises_a_workflow_error(text: str) -> None:
    our_error_or_value(lambda: decode_scipion_text(text, Path("t.json")), WorkflowError, ["t.json"])
