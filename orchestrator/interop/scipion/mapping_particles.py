"""The mapping table, part 2: RELION classification, refinement, reconstruction; Xmipp's particles.

See :mod:`.mapping` for how the table is read. Scipion's RELION forms (``ProtRelionBase``)
ask for the *oversampled* angular and offset steps, as RELION's own GUI does, and pass
``step x 2 x oversampling`` to ``relion_refine``; our RELION protocols take the steps
``relion_refine`` gets, so those are converted (:func:`.units.relion_sampling_factor`).
Xmipp's entries are written from the plugin's source (it needs Xmipp's binaries to load).
"""

from __future__ import annotations

from orchestrator.interop.scipion.rules import (
    COMMON_QUIET,
    Drop,
    Link,
    ProtocolMap,
    SetParam,
    Values,
    copy,
    when_off,
    when_on,
)
from orchestrator.interop.scipion.units import (
    choice,
    files_pattern,
    gpu_count,
    integer,
    positive_or_none,
    relion_sampling_factor,
    symmetry,
    text,
    times,
)

RELION_QUIET = COMMON_QUIET | {
    "isClassify", "is2D", "fillRandomSubset", "continueIter", "continueRun", "haveDataBeenPhaseFlipped",
    "alignmentAsPriors", "useParallelDisk", "pooledParticles", "allParticlesRam", "useScratch", "scratchDir",
    "combineItersDisc", "skipPadding", "defocusRange", "numParticles", "numberOfVDAMBatches", "centerAvg",
    "useGradientAlg", "doGpu", "gpusToUse", "referenceAverages", "doContinue",
}
SAMPLING_CHOICES = ("30", "15", "7.5", "3.7", "1.8", "0.9", "0.5", "0.2", "0.1", "0.06", "0.03", "0.01", "0.007",
                    "0.004")


def _volume_file() -> tuple[SetParam, ...]:
    """A ProtImportVolumes folded into the run that uses its map: the file name."""
    return (SetParam("reference_file", ("filesPath", "filesPattern"),
                     lambda v: files_pattern(v.get("filesPath"), v.get("filesPattern")),
                     "the map file of Scipion's volume import", ask=True),)



def _relion_common() -> tuple[SetParam, ...]:
    """What Scipion's RELION classification and refinement forms share (ProtRelionBase)."""
    return (
        copy("ctf", "doCTF"),
        SetParam("particle_diameter", ("maskDiameterA",), lambda v: positive_or_none(v.get("maskDiameterA")),
                 "maskDiameterA in Å; Scipion's -1 (automatic) leaves RELION's default"),
        copy("mpi", "numberOfMpi"),
        copy("threads", "numberOfThreads"),
        SetParam("gpus", ("doGpu", "gpusToUse"), lambda v: gpu_count(v.get("doGpu"), v.get("gpusToUse")),
                 "the GPUs listed in gpusToUse (1 when the list is empty), 0 without doGpu"),
        SetParam("extra_args", ("extraParams",), lambda v: text(v.get("extraParams")) or None,
                 "Scipion's additional arguments, passed to relion_refine as they are: check them"),
        copy("offset_range", "offsetSearchRangePix"),
        SetParam("offset_step", ("offsetSearchStepPix", "oversampling"),
                 lambda v: times(v.get("offsetSearchStepPix"), relion_sampling_factor(v.get("oversampling"))),
                 "Scipion passes --offset_step = step x 2 x oversampling (px)"),
    )


def _healpix(ours: str, scipion: str) -> SetParam:
    option = "--auto_local_healpix_order" if ours.startswith("local") else "--healpix_order"
    return SetParam(ours, (scipion,), lambda v: choice(v.get(scipion), SAMPLING_CHOICES),
                    "Scipion passes the index of its angular sampling choice (30°, 15°, 7.5°... = 0, 1, 2...) as "
                    f"{option}, with --oversampling 1 as ours")


def _relion_refusal(values: Values) -> str | None:
    if when_on("doContinue")(values):
        return "continues an earlier RELION run (doContinue); a workflow's runs start afresh"
    return None


RELION_DROPS = (
    Drop("copyAlignment", False, "the particles' earlier alignment is not used as a start"),
    Drop("ignoreCTFUntilFirstPeak", False, "no --ctf_intact_first_peak"),
    Drop("doCtfManualGroups", False, "no manual defocus groups"),
    Drop("limitResolEStep", -1, "no E-step resolution limit"),
    Drop("maskZero", 0, "particles are masked with zeros"),
    Drop("allowCoarserSampling", False, "no coarser sampling"),
    Drop("oversampling", 1, "our RELION runs use --oversampling 1"),
    Drop("doImageAlignment", True, "images are always aligned"),
    Drop("referenceMask", None, "no reference mask"),
    Drop("referenceMask2D", None, "no reference mask"),
    Drop("solventMask", None, "no solvent mask"),
    Drop("solventFscMask", False, "no solvent-flattened FSC"),
    Drop("isMapAbsoluteGreyScale", False, "the reference is taken as not on absolute grey scale"),
    Drop("useBlush", False, "no Blush regularisation (RELION 5)"),
    Drop("relaxSymm", "", "no symmetry relaxation"),
)


def _vdam_note(values: Values) -> list[str]:
    if when_on("useGradientAlg", True)(values):
        batches = values.get("numberOfVDAMBatches")
        return [f"Scipion ran RELION's VDAM algorithm ({batches} mini-batches); relion.class2d runs RELION 3.1's "
                f"EM algorithm for {values.get('numberOfIterations')} iterations (numberOfIterations)"]
    return []


def _reference(ours: str = "reference") -> Link:
    return Link(ours, "referenceVolume", folds={"ProtImportVolumes": _volume_file()})



PARTICLE_MAPS: tuple[ProtocolMap, ...] = (
    # ---- RELION classification and refinement
    ProtocolMap(
        "ProtRelionClassify2D", "relion.class2d",
        links=(Link("particles", "inputParticles"),),
        params=(*_relion_common(), copy("classes", "numberOfClasses"), copy("iterations", "numberOfIterations"),
                copy("tau2_fudge", "regularisationParamT"),
                SetParam("psi_step", ("inplaneAngularSamplingDeg", "oversampling"),
                         lambda v: times(v.get("inplaneAngularSamplingDeg"),
                                          relion_sampling_factor(v.get("oversampling"))),
                         "Scipion passes --psi_step = in-plane sampling x 2 x oversampling (degrees)")),
        outputs={"outputClasses": "classes", "outputParticles": "particles"},
        drops=RELION_DROPS, quiet=RELION_QUIET, refuse=_relion_refusal, notes=_vdam_note,
    ),
    ProtocolMap(
        "ProtRelionClassify3D", "relion.class3d",
        links=(Link("particles", "inputParticles"), _reference()),
        params=(*_relion_common(), copy("classes", "numberOfClasses"), copy("iterations", "numberOfIterations"),
                copy("tau2_fudge", "regularisationParamT"), copy("ini_high", "initialLowPassFilterA"),
                SetParam("symmetry", ("symmetryGroup",), lambda v: symmetry(v.get("symmetryGroup"))),
                _healpix("healpix_order", "angularSamplingDeg")),
        outputs={"outputClasses": "classes", "outputParticles": "particles"},
        drops=(*RELION_DROPS, Drop("localAngularSearch", False, "no local angular search"),
               Drop("useFastSubsets", False, "no fast subsets")),
        quiet=RELION_QUIET | {"localAngularSearchRange"}, refuse=_relion_refusal,
        one_of=(("reference", "reference_file"),),
    ),
    ProtocolMap(
        "ProtRelionRefine3D", "relion.autorefine",
        links=(Link("particles", "inputParticles"), _reference()),
        params=(*_relion_common(), copy("ini_high", "initialLowPassFilterA"),
                SetParam("symmetry", ("symmetryGroup",), lambda v: symmetry(v.get("symmetryGroup"))),
                _healpix("healpix_order", "angularSamplingDeg"),
                _healpix("local_healpix_order", "localSearchAutoSamplingDeg")),
        outputs={"outputVolume": "volume", "outputParticles": "particles"},
        drops=(*RELION_DROPS, Drop("useFinerSamplingFaster", False, "no finer sampling shortcut")),
        quiet=RELION_QUIET, refuse=_relion_refusal,
        one_of=(("reference", "reference_file"),),
    ),
    ProtocolMap(
        "ProtRelionReconstruct", "relion.reconstruct",
        links=(Link("particles", "inputParticles"),),
        params=(SetParam("symmetry", ("symmetryGroup",), lambda v: symmetry(v.get("symmetryGroup"))),
                SetParam("maxres", ("maxRes",), lambda v: positive_or_none(v.get("maxRes")),
                         "Scipion's -1 means up to Nyquist"),
                copy("ctf", "doCTF"), copy("mpi", "numberOfMpi"),
                SetParam("extra_args", ("extraParams",), lambda v: text(v.get("extraParams")) or None,
                         "Scipion's extra parameters, passed to relion_reconstruct as they are: check them")),
        outputs={"outputVolume": "volume"},
        drops=(Drop("subset", 0, "the whole set is reconstructed (with its two halves)"),
               Drop("classNum", -1, "all classes are used"), Drop("pad", 2, "padding is 2"),
               Drop("doEwald", False, "no Ewald-sphere correction"), Drop("skipMask", False, "no masking option"),
               Drop("maskDiameterA", -1, "no mask diameter"), Drop("newBoxSize", -1, "the box is kept"),
               Drop("skipWeight", False, "no weighting option"),
               Drop("ctfIntactFirstPeak", False, "no --ctf_intact_first_peak"),
               Drop("reverseCurvature", False, "no Ewald-sphere correction")),
        quiet=COMMON_QUIET | {"edge", "numSectors"},
    ),
    ProtocolMap(
        "ProtRelionPostprocess", "relion.postprocess",
        links=(Link("volume", "protRefine", whole="volume", when=when_on("relionInput", True)),
               Link("volume", "inputVolume", when=when_off("relionInput", True)),
               Link(None, "solventMask", folds={"ProtRelionCreateMask3D": (
                   copy("mask_lowpass", "initialLowPassFilterA"), copy("mask_threshold", "threshold"),
                   copy("mask_extend", "extend"), copy("mask_soft_edge", "edge"))})),
        params=(copy("auto_bfactor", "doAutoBfactor"), copy("bfactor", "bfactor", when_off("doAutoBfactor", True))),
        outputs={"outputVolume": "volume"},
        drops=(Drop("bodyNum", 1, "no multi-body refinements"),
               Drop("calibratedPixelSize", 0, "the map's own pixel size is used"),
               Drop("mtf", None, "no detector MTF correction"), Drop("origPixelSize", -1, "no MTF correction"),
               Drop("bfactorLowRes", 10, "the Guinier fit starts at 10 Å"),
               Drop("bfactorHighRes", 0, "the Guinier fit goes to the map's resolution"),
               Drop("skipFscWeighting", False, "the map is always FSC-weighted"),
               Drop("filterEdgeWidth", 2, "RELION's default edge"),
               Drop("randomizeAtFsc", 0.8, "RELION's default phase randomisation"),
               Drop("forceMask", False, "no forced mask")),
        quiet=COMMON_QUIET | {"relionInput", "inputType", "lowRes", "inputHalf1", "inputHalf2"},
        refuse=lambda v: ("post-processes two separate half maps (inputType 1); relion.postprocess takes a "
                          "refined map with its half maps" if when_off("relionInput", True)(v)
                          and integer(v.get("inputType")) == 1 else None),
    ),
    # ---- Xmipp (the plugin needs Xmipp's binaries; written from its source)
    ProtocolMap(
        "XmippProtCL2D", "emtools.classify2d",
        links=(Link("particles", "inputParticles"),),
        params=(copy("n_classes", "numberOfClasses"), copy("iterations", "numberOfIterations")),
        outputs={"outputClasses": "classes"},
        drops=(Drop("randomInitialization", True, "classes always start from random particles"),
               Drop("numberOfInitialClasses", None, "CL2D's splitting from fewer classes is not done: "
                                                    "emtools.classify2d starts with all n_classes"),
               Drop("comparisonMethod", 0, "correntropy is not available (correlation is used)"),
               Drop("clusteringMethod", 0, "robust clustering is not available"),
               Drop("extraParams", "", "Xmipp options do not apply")),
        quiet=COMMON_QUIET | {"doCore", "thZscore", "thPCAZscore", "doStableCore", "tolerance", "computeHierarchy",
                              "analyzeRejected", "initialClasses"},
    ),
    ProtocolMap(
        "XmippProtReconstructFourier", "emtools.reconstruct",
        links=(Link("particles", "inputParticles"),),
        outputs={"outputVolume": "volume"},
        drops=(Drop("symmetryGroup", "c1", "emtools.reconstruct applies no symmetry"),
               Drop("maxRes", -1, "no resolution limit"),
               Drop("correctCTF", True, "emtools.reconstruct always corrects the CTF"),
               Drop("extraParams", "", "Xmipp options do not apply")),
        quiet=COMMON_QUIET | {"useHalves", "correctEnvelope", "pad_proj", "pad_vol", "legacy", "approx"},
    ),
    ProtocolMap(
        "XmippProtResolution3D", "emtools.fsc",
        links=(Link("volume", "inputVolume"),
               Link("reference", "referenceVolume", when=when_off("useHalves"),
                    folds={"ProtImportVolumes": _volume_file()})),
        outputs={},
        quiet=COMMON_QUIET | {"doFSC", "useHalves", "doComputeBfactor"},
        refuse=lambda v: "computes no FSC (doFSC is off)" if when_off("doFSC", True)(v) else None,
    ),
)
