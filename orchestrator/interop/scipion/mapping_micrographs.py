"""The mapping table, part 1: imports, motion correction, CTF, picking, extraction.

See :mod:`.mapping` for how the table is read. Scipion's CTF protocols output a ``SetOfCTF``
beside the micrographs and later protocols take both (extraction's ``ctfRelations``); our
``emtools.ctffind`` outputs the micrographs with their CTF, so ``outputCTF`` maps to
``micrographs`` and extraction's ``ctfRelations`` to its ``micrographs`` input.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.interop.scipion.rules import (
    COMMON_QUIET,
    Drop,
    Link,
    ProtocolMap,
    SetParam,
    Values,
    copy,
    fixed,
    when_is,
    when_on,
)
from orchestrator.interop.scipion.units import (
    bin_factor,
    choice,
    files_pattern,
    flag,
    integer,
    microns_to_angstrom,
    middle,
    number,
    positive_int,
    positive_or_none,
    scanner_pixel_size,
    text,
)

IMPORT_QUIET = COMMON_QUIET | {"importFrom", "copyFiles", "useRegexps", "blacklistDateFrom", "blacklistDateTo",
                               "samplingRateMode", "magnification", "scannedPixelSize", "moviesToExclude"}


def _acquisition() -> tuple[SetParam, ...]:
    """The microscope settings of Scipion's image imports; the pixel size from either mode."""
    return (
        copy("voltage", "voltage"),
        copy("cs", "sphericalAberration"),
        copy("amplitude_contrast", "amplitudeContrast"),
        SetParam("pixel_size", ("samplingRate",), lambda v: v.get("samplingRate"), "",
                 lambda v: integer(v.get("samplingRateMode")) in (0, None)),
        SetParam("pixel_size", ("scannedPixelSize", "magnification"),
                 lambda v: scanner_pixel_size(v.get("scannedPixelSize"), v.get("magnification")),
                 "scanned pixel size (µm/px) x 10^4 / magnification = Å/px", when_is("samplingRateMode", 1)),
    )


def _files(ours: str) -> SetParam:
    return SetParam(ours, ("filesPath", "filesPattern"),
                    lambda v: files_pattern(v.get("filesPath"), v.get("filesPattern")),
                    "Scipion's files directory joined with its pattern", ask=True)


IMPORT_DROPS = (
    Drop("haveDataBeenPhaseFlipped", False, "phase-flipped images are not supported"),
    Drop("blacklistSet", None, "no list of rejected files"),
    Drop("blacklistFile", None, "no list of rejected files"),
)


def _import_refusal(kind: str, choices: tuple[str, ...], accepted: int, ours: str) -> Callable[[Values], str | None]:
    def refuse(values: Values) -> str | None:
        index = choice(values.get("importFrom"), choices)
        if index is None or index == accepted:
            return None
        return (f"imports {kind} from {choices[index]} files (importFrom {index}); {ours} reads "
                f"{choices[accepted] if choices[accepted] != 'files' else 'image files'} only")
    return refuse


def _movie_notes(values: Values) -> list[str]:
    pattern = files_pattern(values.get("filesPath"), values.get("filesPattern")) or ""
    if pattern and not pattern.lower().endswith((".mrc", ".mrcs", "*")):
        return [f"the files {pattern!r} are not MRC stacks, which are what emtools.import_movies reads; "
                "convert them first (e.g. TIFF to MRC)"]
    return []


def _background_radius(values: Values) -> float | None:
    diameter = number(values.get("backDiameter"))
    if diameter is None or diameter <= 0:
        return None
    binning = bin_factor(values.get("boxSize"), values.get("rescaledSize")) if when_on("doRescale")(values) else 1
    return diameter / 2 / (binning or 1)



MICROGRAPH_MAPS: tuple[ProtocolMap, ...] = (
    # ---- imports (pwem)
    ProtocolMap(
        "ProtImportMovies", "emtools.import_movies",
        params=(_files("files"), *_acquisition(), copy("dose_per_frame", "dosePerFrame")),
        outputs={"outputMovies": "movies"},
        drops=(*IMPORT_DROPS,
               Drop("doseInitial", 0, "pre-exposure: emtools.import_movies' dose weighting starts at 0 e/Å²"),
               Drop("gainFile", None, "no gain correction: give gain-corrected movies"),
               Drop("darkFile", None, "no dark-image correction"),
               Drop("inputIndividualFrames", False, "one file per frame is not read: one MRC stack per movie")),
        quiet=IMPORT_QUIET | {"numberOfIndividualFrames", "stackFrames", "writeMoviesInProject", "movieSuffix",
                              "deleteFrames"},
        notes=_movie_notes,
    ),
    ProtocolMap(
        "ProtImportMicrographs", "emtools.import_micrographs",
        params=(_files("files"), *_acquisition()),
        outputs={"outputMicrographs": "micrographs"},
        drops=IMPORT_DROPS,
        quiet=IMPORT_QUIET | {"emxFile", "mdFile", "sqliteFile"},
        refuse=_import_refusal("micrographs", ("files", "EMX", "Xmipp 3", "Scipion sqlite"), 0,
                               "emtools.import_micrographs"),
    ),
    ProtocolMap(
        "ProtImportParticles", "emtools.import_particles",
        params=(SetParam("star_file", ("starFile",), lambda v: text(v.get("starFile")) or None, "", ask=True),
                SetParam("pixel_size", ("samplingRate",), lambda v: positive_or_none(v.get("samplingRate")),
                         "used only for RELION 3.0 files, which do not give it")),
        outputs={"outputParticles": "particles"},
        drops=(*IMPORT_DROPS,
               Drop("voltage", 300, "read from the STAR file's optics table"),
               Drop("sphericalAberration", 2.7, "read from the STAR file's optics table"),
               Drop("amplitudeContrast", 0.1, "read from the STAR file's optics table"),
               Drop("ignoreIdColumn", False, "particle ids are always read")),
        quiet=IMPORT_QUIET | {"filesPath", "filesPattern", "emxFile", "alignType", "mdFile", "sqliteFile",
                              "frealignLabel", "stackFile", "parFile", "lstFile", "csFile"},
        refuse=_import_refusal("particles", ("files", "EMX", "Xmipp 3", "RELION STAR", "Scipion sqlite",
                                             "Frealign", "EMAN", "cryoSPARC"), 3, "emtools.import_particles"),
    ),
    # ---- motion correction
    ProtocolMap(
        "ProtMotionCorr", "emtools.motioncorr",
        links=(Link("movies", "inputMovies"),),
        params=(copy("dose_weighting", "doApplyDoseFilter"),),
        outputs={"outputMicrographs": "micrographs", "outputMicrographsDoseWeighted": "micrographs"},
        drops=(Drop("binFactor", 1, "no binning in emtools.motioncorr"),
               Drop("patchX", 1, "emtools.motioncorr aligns whole frames, not patches"),
               Drop("patchY", 1, "emtools.motioncorr aligns whole frames, not patches"),
               Drop("alignFrame0", 1, "all frames are aligned and summed"),
               Drop("alignFrameN", 0, "all frames are aligned and summed"),
               Drop("cropDimX", 0, "no cropping"), Drop("cropDimY", 0, "no cropping"),
               Drop("splitEvenOdd", False, "no odd/even sums"),
               Drop("doSaveMovie", False, "aligned movies are not written"),
               Drop("gainRot", 0, "no gain reference"), Drop("gainFlip", 0, "no gain reference"),
               Drop("defectFile", None, "no camera defects file"), Drop("defectMap", None, "no camera defects map"),
               Drop("doMagCor", False, "no anisotropic magnification correction"),
               Drop("extraParams2", "", "MotionCor2 options do not apply"),
               Drop("extraProtocolParams", "", "MotionCor2 options do not apply")),
        quiet=COMMON_QUIET | {"doSaveAveMic", "useAlignToSum", "patchOverlap", "group", "groupLocal", "tol",
                              "doSaveUnweightedMic", "eerGroup", "eerSampling", "cropOffsetX", "cropOffsetY",
                              "scaleMaj", "scaleMin", "angDist"},
    ),
    ProtocolMap(
        "ProtRelionMotioncor", "emtools.motioncorr",
        links=(Link("movies", "inputMovies"),),
        params=(copy("dose_weighting", "doDW"),
                SetParam("bfactor", ("bfactor",), lambda v: v.get("bfactor"),
                         "RELION's --bfactor (Å²), the same filter before alignment")),
        outputs={"outputMicrographs": "micrographs", "outputMicrographsDoseWeighted": "micrographs"},
        drops=(Drop("binFactor", 1, "no binning in emtools.motioncorr"),
               Drop("patchX", 1, "emtools.motioncorr aligns whole frames, not patches"),
               Drop("patchY", 1, "emtools.motioncorr aligns whole frames, not patches"),
               Drop("sumFrame0", 1, "all frames are aligned and summed"),
               Drop("sumFrameN", 0, "all frames are aligned and summed"),
               Drop("groupFrames", 1, "frames are aligned one by one"),
               Drop("gainRot", 0, "no gain reference"), Drop("gainFlip", 0, "no gain reference"),
               Drop("defectFile", None, "no camera defects file"),
               Drop("extraParams", "", "relion_run_motioncorr options do not apply")),
        quiet=COMMON_QUIET | {"saveNonDW", "savePSsum", "dosePSsum", "saveFloat16", "eerGroup", "eerSampling"},
    ),
    ProtocolMap(
        "CistemProtUnblur", "emtools.motioncorr",
        links=(Link("movies", "inputMovies"),),
        params=(copy("dose_weighting", "doApplyDoseFilter"), copy("bfactor", "bfactor"),
                copy("max_iterations", "maximumNumberIterations")),
        outputs={"outputMicrographs": "micrographs", "outputMicrographsDoseWeighted": "micrographs"},
        drops=(Drop("OutRadShiftLimit", None, "Unblur's limit is in Å and emtools.motioncorr's max_shift_px in "
                                              "pixels, whose size is only known once the movies are read"),
               Drop("binFactor", 1, "no binning in emtools.motioncorr"),
               Drop("alignFrame0", 1, "all frames are aligned and summed"),
               Drop("alignFrameN", 0, "all frames are aligned and summed"),
               Drop("extraProtocolParams", "", "Unblur options do not apply")),
        quiet=COMMON_QUIET | {"doSaveAveMic", "useAlignToSum", "minShiftInitSearch", "doRestoreNoisePwr",
                              "terminShiftThreshold", "HWHoriFourMask", "HWVertFourMask"},
    ),
    # ---- CTF estimation: Scipion's outputCTF is our ctffind's micrographs (they carry the CTF)
    ProtocolMap(
        "CistemProtCTFFind", "emtools.ctffind",
        links=(Link("micrographs", "inputMicrographs"),),
        params=(copy("tile_size", "windowSize"), copy("min_resolution", "lowRes"),
                copy("max_resolution", "highRes"), copy("defocus_min", "minDefocus"),
                copy("defocus_max", "maxDefocus"), copy("max_astigmatism", "astigmatism", when_on("fixAstig", True))),
        outputs={"outputCTF": "micrographs"},
        drops=(Drop("fixAstig", True, "emtools.ctffind always bounds the astigmatism (max_astigmatism)"),
               Drop("findPhaseShift", False, "no phase-shift fit (phase-plate data)"),
               Drop("slowSearch", False, "no exhaustive search mode"),
               Drop("usePowerSpectra", False, "spectra are computed from the micrographs")),
        quiet=COMMON_QUIET | {"inputType", "avgFrames", "stepDefocus", "minPhaseShift", "maxPhaseShift",
                              "stepPhaseShift"},
        refuse=lambda v: ("estimates the CTF from movies (inputType 0); emtools.ctffind reads micrographs"
                          if integer(v.get("inputType")) == 0 else None),
    ),
    ProtocolMap(
        "ProtGctf", "emtools.ctffind",
        links=(Link("micrographs", "inputMicrographs"),),
        params=(copy("tile_size", "windowSize"), copy("min_resolution", "lowRes"),
                copy("max_resolution", "highRes"), copy("defocus_min", "minDefocus"),
                copy("defocus_max", "maxDefocus"), copy("max_astigmatism", "astigmatism")),
        outputs={"outputCTF": "micrographs"},
        drops=(Drop("ctfDownFactor", 1, "no downsampling before the fit"),
               Drop("doPhShEst", False, "no phase-shift fit (phase-plate data)"),
               Drop("doHighRes", False, "no high-resolution refinement")),
        quiet=COMMON_QUIET | {"stepDefocus", "plotResRing", "doEPA", "EPAsmp", "doBasicRotave", "overlap",
                              "convsize", "smoothResL", "bfactor", "HighResL", "HighResH", "HighResBf",
                              "doValidate", "phaseShiftL", "phaseShiftH", "phaseShiftS", "phaseShiftT",
                              "coSearchRefine", "refine2DT"},
    ),
    ProtocolMap(
        "XmippProtCTFMicrographs", "emtools.ctffind",
        links=(Link("micrographs", "inputMicrographs"),),
        params=(SetParam("defocus_min", ("minDefocus",), lambda v: microns_to_angstrom(v.get("minDefocus")),
                         "Xmipp's defocus range is in µm: x 10^4 = Å"),
                SetParam("defocus_max", ("maxDefocus",), lambda v: microns_to_angstrom(v.get("maxDefocus")),
                         "Xmipp's defocus range is in µm: x 10^4 = Å"),
                copy("tile_size", "windowSize")),
        outputs={"outputCTF": "micrographs"},
        drops=(Drop("lowRes", None, "a digital frequency (0-0.5 of the downsampled micrograph); emtools.ctffind's "
                                    "min_resolution is in Å, which needs the pixel size: our default applies"),
               Drop("highRes", None, "a digital frequency (0-0.5 of the downsampled micrograph); emtools.ctffind's "
                                     "max_resolution is in Å, which needs the pixel size: our default applies"),
               Drop("AutoDownsampling", False, "no downsampling before the fit"),
               Drop("ctfDownFactor", 1, "no downsampling before the fit"),
               Drop("doInitialCTF", False, "no start from an earlier CTF"),
               Drop("findPhaseShift", False, "no phase-shift fit (phase-plate data)"),
               Drop("refineAmplitudeContrast", False, "the amplitude contrast is the import's")),
        quiet=COMMON_QUIET | {"recalculate", "sqliteFile", "continueRun", "ctfRelations", "doOptimizeDefocus",
                              "accel1D", "doCTFAutoDownsampling", "skipBorders"},
    ),
    # ---- picking and extraction
    ProtocolMap(
        "ProtRelionAutopickLoG", "emtools.pick",
        links=(Link("micrographs", "inputMicrographs"),),
        params=(fixed("method", "blob", "RELION's Laplacian-of-Gaussian picker is emtools.pick's blob method"),
                SetParam("particle_diameter", ("minDiameter", "maxDiameter"),
                         lambda v: middle(v.get("minDiameter"), v.get("maxDiameter")),
                         "the middle of RELION's LoG diameter range, (min + max) / 2, in Å")),
        outputs={"outputCoordinates": "coordinates"},
        drops=(Drop("areParticlesWhite", False, "emtools.pick has no setting for white particles"),
               Drop("threshold", 0, "RELION's LoG threshold adjustment has no equivalent; threshold_sigma's "
                                    "default applies"),
               Drop("threshold2", 999, "no upper threshold"),
               Drop("maxResolution", 20, "no low-pass before picking"),
               Drop("extraParams", "", "relion_autopick options do not apply")),
        quiet=COMMON_QUIET | {"boxSize"},
    ),
    ProtocolMap(
        "ProtRelionExtractParticles", "emtools.extract",
        links=(Link("coordinates", "inputCoordinates"), Link("micrographs", "ctfRelations"),
               Link("micrographs", "inputMicrographs", when=when_is("downsampleType", 1))),
        params=(copy("box_size", "boxSize"),
                SetParam("bin_factor", ("boxSize", "rescaledSize", "doRescale"),
                         lambda v: bin_factor(v.get("boxSize"), v.get("rescaledSize")),
                         "box / re-scaled box (RELION's --scale) as a Fourier binning factor", when_on("doRescale")),
                SetParam("invert_contrast", ("doInvert",), lambda v: bool(flag(v.get("doInvert")))),
                copy("normalize", "doNormalize"),
                SetParam("background_radius", ("backDiameter", "boxSize", "rescaledSize", "doRescale"),
                         _background_radius,
                         "RELION's --bg_radius: backDiameter / 2 / binning, a radius in output pixels",
                         when_on("doNormalize", True))),
        outputs={"outputParticles": "particles"},
        drops=(Drop("stddevWhiteDust", -1, "no dust removal"), Drop("stddevBlackDust", -1, "no dust removal")),
        quiet=COMMON_QUIET | {"saveFloat16", "downsampleType", "rescaledSize", "doRescale"},
        notes=lambda v: ["doInvert is unset, which Scipion runs as no inversion: invert_contrast=false "
                         "(emtools.extract inverts by default)"] if flag(v.get("doInvert")) is None else [],
    ),
    ProtocolMap(
        "ProtRelionPreprocessParticles", "relion.preprocess",
        links=(Link("particles", "inputParticles"),),
        params=(copy("normalise", "doNormalize"),
                SetParam("bg_radius", ("backRadius",), lambda v: positive_int(v.get("backRadius")),
                         "backRadius in px; Scipion's -1 leaves RELION's default", when_on("doNormalize", True)),
                copy("invert_contrast", "doInvert"),
                SetParam("rescale_box", ("scaleSize",), lambda v: positive_int(v.get("scaleSize")), "",
                         when_on("doScale"))),
        outputs={"outputParticles": "particles"},
        drops=(Drop("doRemoveDust", False, "no dust removal in relion.preprocess"),
               Drop("doWindow", False, "no windowing in relion.preprocess")),
        quiet=COMMON_QUIET | {"whiteDust", "blackDust", "windowSize", "doScale"},
    ),
)
