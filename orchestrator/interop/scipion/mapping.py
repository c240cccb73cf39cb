"""THE mapping table: which Scipion protocol becomes which of ours, param by param.

Each entry of :data:`MAPPINGS` is a :class:`~.rules.ProtocolMap`, written from the Scipion
3.11 source of the class (``pwem``, ``scipion-em-relion`` 5, ``-motioncorr``, ``-cistem``,
``-gctf``, ``-xmipp``). Units follow what Scipion hands to the program, see :mod:`.units`.

Two Scipion habits shape the table. Its CTF protocols output a ``SetOfCTF`` beside the
micrographs and later protocols take both (extraction's ``ctfRelations``); our
``emtools.ctffind`` outputs the micrographs with their CTF, so ``outputCTF`` maps to
``micrographs`` and extraction's ``ctfRelations`` to its ``micrographs`` input. And some
Scipion protocols only make something another protocol of ours makes itself (a mask for
post-processing) or names a file (a volume import): those are *folded* into the runs
that use them (see ``Link.folds``) instead of becoming runs.

The table in brief (Scipion class -> ours; outputs renamed e.g. ``outputMicrographs`` ->
``micrographs``, ``outputCTF`` -> ``micrographs``, ``outputClasses`` -> ``classes``):

=============================================  ===========================================
ProtImportMovies / Micrographs / Particles      emtools.import_movies / _micrographs / _particles
ProtMotionCorr, ProtRelionMotioncor,            emtools.motioncorr
CistemProtUnblur
CistemProtCTFFind, ProtGctf,                    emtools.ctffind (Xmipp's defocus µm -> Å)
XmippProtCTFMicrographs
ProtRelionAutopickLoG                           emtools.pick, method blob
ProtRelionExtractParticles                      emtools.extract (re-scaling -> bin_factor)
ProtRelionPreprocessParticles                   relion.preprocess
ProtRelionClassify2D / 3D, ProtRelionRefine3D   relion.class2d / class3d / autorefine
ProtRelionReconstruct, ProtRelionPostprocess    relion.reconstruct, relion.postprocess
XmippProtCL2D, XmippProtReconstructFourier,     emtools.classify2d, emtools.reconstruct,
XmippProtResolution3D                           emtools.fsc
ProtImportVolumes, ProtRelionCreateMask3D       folded: reference_file, postprocess mask_*
=============================================  ===========================================

:data:`NO_EQUIVALENT` gives the reason shown for Scipion classes known to have no
equivalent; any other class not in :data:`MAPPINGS` is reported as having none.
"""

from __future__ import annotations

from orchestrator.interop.scipion.mapping_micrographs import MICROGRAPH_MAPS
from orchestrator.interop.scipion.mapping_particles import PARTICLE_MAPS
from orchestrator.interop.scipion.rules import ProtocolMap

MAPPINGS: dict[str, ProtocolMap] = {entry.scipion_class: entry for entry in (*MICROGRAPH_MAPS, *PARTICLE_MAPS)}

NO_EQUIVALENT: dict[str, str] = {
    "SphireProtCRYOLOPicking": "crYOLO's neural-network picker has no equivalent (emtools.pick finds blobs or "
                               "matches templates)",
    "ProtRelionCreateMask3D": "a 3D mask is no run of its own here: relion.postprocess makes its mask from its own "
                              "settings",
    "ProtImportVolumes": "there is no volume import: a map file is given to the runs that use it (reference_file)",
    "ProtImportMask": "there is no mask import: relion.postprocess makes its own mask",
    "ProtImportCoordinates": "there is no coordinate import",
    "ProtImportCTF": "there is no CTF import (emtools.import_micrographs reads the CTF from a RELION STAR file)",
    "ProtRelionInitialModel": "there is no initial-model protocol: give a map to the refinement (reference_file)",
    "ProtRelionSelectClasses2D": "there is no automatic 2D class selection",
    "ProtRelionBayesianPolishing": "there is no Bayesian polishing",
    "ProtRelionCtfRefinement": "there is no CTF refinement",
    "XmippProtScreenParticles": "there is no particle screening (Z-score rejection)",
    "ProtUnionSet": "there is no set union",
    "ProtSubSet": "there are no subsets of sets",
    "ProtUserSubSet": "there are no hand-picked subsets",
    "ProtSplitSet": "there is no set split",
}
