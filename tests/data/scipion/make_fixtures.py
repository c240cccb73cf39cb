#!/usr/bin/env python
"""Write the Scipion workflow fixtures of tests/unit/test_scipion_workflow.py with real Scipion.

Not run by the tests or CI: it needs Scipion 3.11 and its plugins. Run it in the anchor
environment (see README.md beside it)::

    BENCH_ROOT=/tmp/scipion-interop bash ../../../../shared/anchors/scipion/setup.sh
    source ../../../../shared/anchors/scipion/env.sh     # with the same BENCH_ROOT
    pip install scipion-em-relion scipion-em-motioncorr scipion-em-cistem scipion-em-gctf scipion-em-sphire
    python make_fixtures.py [OUTDIR]

It builds one Scipion project per workflow with ``project.newProtocol``, wires the inputs
with real pointers, and writes each with ``project.exportProtocols`` (what Scipion's
"Export" menu does). Xmipp's protocols cannot be made without Xmipp's binaries, so the
Xmipp entries of ``xmipp_handwritten.json`` are written by hand from the plugin's source
(scipion-em-xmipp 29.0.1), in the key order of ``Protocol.getDefinitionDict``; where a real
protocol points to one of them, a stand-in protocol made the pointer and its entry is then
replaced. The template is an export with values replaced by ``~label|default|type~`` fields,
which is how Scipion's templates are made; Scipion's own ``LocalTemplate`` then reads it back.
Finally every file is loaded back into a new project with ``project.loadProtocols``.
"""

from __future__ import annotations

import json
import os
import sys
from collections import OrderedDict
from pathlib import Path

from pyworkflow import Config
from pyworkflow.project import Manager
from pyworkflow.template import LocalTemplate

HERE = Path(__file__).resolve().parent
PROTOCOLS = Config.getDomain().getProtocols()


def new_project(name: str):
    manager = Manager()
    if manager.hasProject(name):
        manager.deleteProject(name)
    return manager.createProject(name)


def add(project, class_name: str, label: str, **values):
    """A protocol with params set, saved in the project (not run: exports need no results)."""
    protocol = project.newProtocol(PROTOCOLS[class_name], **values)
    protocol.setObjLabel(label)  # newProtocol(objLabel=...) keeps Scipion's default label
    project.saveProtocol(protocol)
    return protocol


def link(project, consumer, param: str, producer, output: str = "") -> None:
    """Point ``consumer.param`` at ``producer.output`` (at the whole protocol when output is empty)."""
    pointer = getattr(consumer, param)
    pointer.set(producer)
    if output:
        pointer.setExtended(output)
    project.saveProtocol(consumer)


def export(project, protocols, name: str, outdir: Path) -> list[dict]:
    path = outdir / name
    project.exportProtocols(protocols, str(path))
    return json.loads(path.read_text())


# ------------------------------------------------------------------ spa_relion.json
def spa_relion(outdir: Path) -> None:
    """A full single-particle chain, every protocol of which has an equivalent."""
    p = new_project("fixture_spa_relion")
    movies = add(p, "ProtImportMovies", "import movies", filesPath="/data/empiar-10028/movies",
                 filesPattern="*.mrcs", samplingRate=1.34, dosePerFrame=1.0, voltage=300, sphericalAberration=2.0,
                 amplitudeContrast=0.1, magnification=59000)
    motion = add(p, "ProtRelionMotioncor", "relion - motion correction", bfactor=150, doDW=True)
    link(p, motion, "inputMovies", movies, "outputMovies")
    ctf = add(p, "CistemProtCTFFind", "cistem - ctffind", lowRes=30.0, highRes=4.0, minDefocus=5000.0,
              maxDefocus=40000.0, astigmatism=500.0, windowSize=512)
    link(p, ctf, "inputMicrographs", motion, "outputMicrographs")
    pick = add(p, "ProtRelionAutopickLoG", "relion - auto-picking LoG", minDiameter=150, maxDiameter=180)
    link(p, pick, "inputMicrographs", motion, "outputMicrographs")
    extract = add(p, "ProtRelionExtractParticles", "relion - particles extraction", boxSize=360, doRescale=True,
                  rescaledSize=120, doInvert=True, doNormalize=True, backDiameter=300)
    link(p, extract, "inputCoordinates", pick, "outputCoordinates")
    link(p, extract, "ctfRelations", ctf, "outputCTF")
    class2d = add(p, "ProtRelionClassify2D", "relion - 2D classification", numberOfClasses=50,
                  useGradientAlg=False, numberOfIterations=25, inplaneAngularSamplingDeg=6.0, maskDiameterA=200,
                  numberOfMpi=3, numberOfThreads=4, doGpu=True, gpusToUse="0:1")
    link(p, class2d, "inputParticles", extract, "outputParticles")
    volume = add(p, "ProtImportVolumes", "import initial model", filesPath="/data/empiar-10028/initial_model.mrc",
                 samplingRate=4.02)
    class3d = add(p, "ProtRelionClassify3D", "relion - 3D classification", numberOfClasses=4,
                  initialLowPassFilterA=50.0, symmetryGroup="d2", angularSamplingDeg=1, numberOfMpi=3)
    link(p, class3d, "inputParticles", extract, "outputParticles")
    link(p, class3d, "referenceVolume", volume, "outputVolume")
    refine = add(p, "ProtRelionRefine3D", "relion - 3D auto-refine", symmetryGroup="d2",
                 initialLowPassFilterA=40.0, angularSamplingDeg=2, localSearchAutoSamplingDeg=4, maskDiameterA=300,
                 numberOfMpi=5, numberOfThreads=2, doGpu=False)
    link(p, refine, "inputParticles", extract, "outputParticles")
    link(p, refine, "referenceVolume", volume, "outputVolume")
    mask = add(p, "ProtRelionCreateMask3D", "relion - create 3d mask", initialLowPassFilterA=12.0, threshold=0.015,
               extend=4, edge=8)
    link(p, mask, "inputVolume", refine, "outputVolume")
    post = add(p, "ProtRelionPostprocess", "relion - post-processing", doAutoBfactor=False, bfactor=-120.0)
    link(p, post, "protRefine", refine)
    link(p, post, "solventMask", mask, "outputMask")
    recon = add(p, "ProtRelionReconstruct", "relion - reconstruct", symmetryGroup="d2", doCTF=True, numberOfMpi=2)
    link(p, recon, "inputParticles", refine, "outputParticles")
    export(p, p.getRuns(), "spa_relion.json", outdir)


# ------------------------------------------------------------------ unmappable_cryolo.json
def unmappable_cryolo(outdir: Path) -> None:
    """crYOLO picking (no equivalent) in the middle of a chain that is otherwise ours."""
    p = new_project("fixture_unmappable")
    movies = add(p, "ProtImportMovies", "import movies", filesPath="/data/krios/2024-05-17",
                 filesPattern="FoilHole_*_fractions.tiff", samplingRateMode=1, scannedPixelSize=14.0,
                 magnification=105000, dosePerFrame=0.8, doseInitial=0.5, gainFile="/data/krios/gain.mrc")
    motion = add(p, "ProtMotionCorr", "motioncorr - movie alignment", binFactor=2.0, patchX=5, patchY=5)
    link(p, motion, "inputMovies", movies, "outputMovies")
    ctf = add(p, "ProtGctf", "gctf - ctf estimation", lowRes=50.0, highRes=4.0, minDefocus=5000.0,
              maxDefocus=90000.0, astigmatism=1000.0, windowSize=1024)
    link(p, ctf, "inputMicrographs", motion, "outputMicrographsDoseWeighted")
    cryolo = add(p, "SphireProtCRYOLOPicking", "sphire - cryolo picking", conservPickVar=0.3, boxSize=200)
    link(p, cryolo, "inputMicrographs", motion, "outputMicrographsDoseWeighted")
    extract = add(p, "ProtRelionExtractParticles", "relion - particles extraction", boxSize=256, doInvert=True)
    link(p, extract, "inputCoordinates", cryolo, "outputCoordinates")
    link(p, extract, "ctfRelations", ctf, "outputCTF")
    prep = add(p, "ProtRelionPreprocessParticles", "relion - preprocess particles", doNormalize=True,
               backRadius=100, doScale=True, scaleSize=128)
    link(p, prep, "inputParticles", extract, "outputParticles")
    class2d = add(p, "ProtRelionClassify2D", "relion - 2D classification", numberOfClasses=100)
    link(p, class2d, "inputParticles", prep, "outputParticles")
    export(p, p.getRuns(), "unmappable_cryolo.json", outdir)


# ------------------------------------------------------------------ xmipp_handwritten.json
def xmipp_handwritten(outdir: Path) -> None:
    """Xmipp protocols (hand-written entries) with real pwem and RELION ones."""
    p = new_project("fixture_xmipp")
    mics = add(p, "ProtImportMicrographs", "import micrographs", filesPath="data/micrographs",
               filesPattern="*.mrc", samplingRate=1.0, voltage=200, sphericalAberration=2.0)
    # stand-in for XmippProtCTFMicrographs: real pointers to it, entry replaced below
    ctf_standin = add(p, "ProtCTFMicrographs", "xmipp3 - ctf estimation")
    link(p, ctf_standin, "inputMicrographs", mics, "outputMicrographs")
    pick = add(p, "ProtRelionAutopickLoG", "relion - auto-picking LoG", minDiameter=180, maxDiameter=220)
    link(p, pick, "inputMicrographs", mics, "outputMicrographs")
    extract = add(p, "ProtRelionExtractParticles", "relion - particles extraction", boxSize=200, doInvert=True,
                  backDiameter=-1)
    link(p, extract, "inputCoordinates", pick, "outputCoordinates")
    link(p, extract, "ctfRelations", ctf_standin, "outputCTF")
    star = add(p, "ProtImportParticles", "import particles", importFrom=3, starFile="Refine3D/job019/run_data.star",
               samplingRate=1.0)
    volume = add(p, "ProtImportVolumes", "import reference map", filesPath="/maps/emd_2984.map", samplingRate=1.0)
    refine = add(p, "ProtRelionRefine3D", "relion - 3D auto-refine", numberOfMpi=3, doGpu=True, gpusToUse="0,1")
    link(p, refine, "inputParticles", star, "outputParticles")
    link(p, refine, "referenceVolume", volume, "outputVolume")
    exported = export(p, p.getRuns(), "xmipp_handwritten.json", outdir)

    ids = {prot.getObjLabel(): prot.strId() for prot in p.getRuns()}
    last = max(int(i) for i in ids.values())
    screen_id, cl2d_id, fourier_id, fsc_id = (str(last + 10 * k) for k in range(1, 5))
    base_ctf = next(entry for entry in exported if entry["object.className"] == "ProtCTFMicrographs")
    xmipp_ctf = OrderedDict(base_ctf)  # pwem's ProtCTFMicrographs form, as XmippProtCTFMicrographs extends it
    xmipp_ctf.update({"object.className": "XmippProtCTFMicrographs", "AutoDownsampling": True, "minDefocus": 0.3,
                      "maxDefocus": 5.5, "doInitialCTF": False, "doOptimizeDefocus": True, "findPhaseShift": False,
                      "accel1D": True, "doCTFAutoDownsampling": True, "refineAmplitudeContrast": False,
                      "skipBorders": False, "numberOfThreads": 2})
    xmipp_ctf.move_to_end("inputMicrographs")
    common = {"object.comment": "", "_useQueue": False, "_prerequisites": "", "_queueParams": None,
              "runName": None, "runMode": 0}
    screen = {"object.className": "XmippProtScreenParticles", "object.id": screen_id,
              "object.label": "xmipp3 - screen particles", **common, "autoParRejection": 1, "maxZscore_": 3.0,
              "percentage": 5, "autoParRejectionSSNR": 0, "percentageSSNR": 5, "autoParRejectionVar": 0,
              "addFeatures": False, "hostName": "localhost", "inputParticles": f"{ids['relion - particles extraction']}"
                                                                                ".outputParticles"}
    cl2d = {"object.className": "XmippProtCL2D", "object.id": cl2d_id, "object.label": "xmipp3 - cl2d",
            **common, "numberOfClasses": 32, "randomInitialization": True, "numberOfInitialClasses": 4,
            "numberOfIterations": 12, "comparisonMethod": 0, "clusteringMethod": 0, "extraParams": "",
            "doCore": True, "thZscore": 3.0, "thPCAZscore": 3.0, "doStableCore": True, "tolerance": 1,
            "computeHierarchy": False, "analyzeRejected": False, "hostName": "localhost", "numberOfMpi": 4,
            "inputParticles": f"{screen_id}.outputParticles"}
    fourier = {"object.className": "XmippProtReconstructFourier", "object.id": fourier_id,
               "object.label": "xmipp3 - reconstruct fourier", **common, "gpuList": "0", "useGpu": True,
               "symmetryGroup": "c1", "maxRes": -1.0, "useHalves": True, "correctCTF": True,
               "correctEnvelope": False, "pad_proj": 2, "pad_vol": 2, "legacy": False, "approx": True,
               "extraParams": "", "hostName": "localhost", "numberOfThreads": 4, "numberOfMpi": 1,
               "inputParticles": f"{ids['relion - 3D auto-refine']}.outputParticles"}
    fsc = {"object.className": "XmippProtResolution3D", "object.id": fsc_id, "object.label": "xmipp3 - resolution 3D",
           **common, "doFSC": True, "useHalves": False, "doComputeBfactor": True, "hostName": "localhost",
           "inputVolume": f"{fourier_id}.outputVolume",
           "referenceVolume": f"{ids['import reference map']}.outputVolume"}
    document = [xmipp_ctf if entry is base_ctf else entry for entry in exported] + [screen, cl2d, fourier, fsc]
    (outdir / "xmipp_handwritten.json").write_text(json.dumps(document, indent=4, separators=(",", ": ")))


# ------------------------------------------------------------------ spa_template.json.template
TEMPLATE_FIELDS = {  # (class, param) -> field text; a value starting with "bare:" is written outside quotes
    ("ProtImportMovies", "filesPath"): "~Movies folder|/data/movies|2~",
    ("ProtImportMovies", "filesPattern"): "~Movie files|*.mrcs|0~",
    ("ProtImportMovies", "samplingRate"): "~Pixel size (Å/px)|1.1|4|pixel_size~",
    ("ProtImportMovies", "dosePerFrame"): "~Dose per frame (e/Å²)|1.2|4~",
    ("ProtImportMovies", "voltage"): "~Voltage (kV)|300|4~",
    ("ProtRelionAutopickLoG", "minDiameter"): "~Smallest particle diameter (Å)|100|3~",
    ("ProtRelionAutopickLoG", "maxDiameter"): "~Largest particle diameter (Å)|140|3~",
    ("ProtRelionClassify2D", "numberOfClasses"): "bare:~Number of 2D classes|50|3~",
    ("ProtRelionClassify2D", "inplaneAngularSamplingDeg"): "~In-plane angular sampling (deg)|6|4~",
    ("ProtRelionClassify2D", "numberOfMpi"): "~MPI processes|4|3~",
}


def spa_template(outdir: Path) -> None:
    """A template: an export of a short chain with fields, and description lines before it."""
    p = new_project("fixture_template")
    movies = add(p, "ProtImportMovies", "import movies")
    motion = add(p, "ProtMotionCorr", "motioncorr - movie alignment", patchX=1, patchY=1)
    link(p, motion, "inputMovies", movies, "outputMovies")
    ctf = add(p, "CistemProtCTFFind", "cistem - ctffind")
    link(p, ctf, "inputMicrographs", motion, "outputMicrographsDoseWeighted")
    pick = add(p, "ProtRelionAutopickLoG", "relion - auto-picking LoG")
    link(p, pick, "inputMicrographs", motion, "outputMicrographsDoseWeighted")
    extract = add(p, "ProtRelionExtractParticles", "relion - particles extraction", boxSize=256, doInvert=True)
    link(p, extract, "inputCoordinates", pick, "outputCoordinates")
    link(p, extract, "ctfRelations", ctf, "outputCTF")
    class2d = add(p, "ProtRelionClassify2D", "relion - 2D classification", useGradientAlg=False)
    link(p, class2d, "inputParticles", extract, "outputParticles")
    document = json.loads(p.getProtocolsJson(p.getRuns()))
    bare = {}
    for entry in document:
        for (class_name, param), field in TEMPLATE_FIELDS.items():
            if entry["object.className"] == class_name:
                if field.startswith("bare:"):
                    token = f"@@bare{len(bare)}@@"
                    bare[json.dumps(token)] = field[len("bare:"):]
                    entry[param] = token
                else:
                    entry[param] = field
    text = json.dumps(document, indent=4, separators=(",", ": "), ensure_ascii=False)
    for token, field in bare.items():
        text = text.replace(token, field)
    description = ("Single-particle template: movies to 2D classes with RELION's LoG picker.\n"
                   "Asks for the movies, the pixel size and dose, the particle size and the number of classes.\n")
    path = outdir / "spa_template.json.template"
    path.write_text(description + text + "\n", encoding="utf-8")
    template = LocalTemplate("fixtures", str(path))  # Scipion's own reader must take it
    template.replaceEnvVariables()  # what Scipion does before reading the fields (splits on "~")
    template.parseContent()
    assert len(template.getParams()) == len(TEMPLATE_FIELDS), template.getParams()


def check_loadable(outdir: Path) -> None:
    """Every exported file loads back into a new project (Xmipp classes are skipped by Scipion)."""
    for name in ("spa_relion.json", "unmappable_cryolo.json", "xmipp_handwritten.json"):
        project = new_project("fixture_reload")
        loaded = project.loadProtocols(str(outdir / name))
        print(f"{name}: {len(loaded)} protocols loaded back by Scipion")


def main() -> None:
    outdir = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    outdir.mkdir(parents=True, exist_ok=True)
    os.chdir(outdir)
    spa_relion(outdir)
    unmappable_cryolo(outdir)
    xmipp_handwritten(outdir)
    spa_template(outdir)
    check_loadable(outdir)


if __name__ == "__main__":
    main()
