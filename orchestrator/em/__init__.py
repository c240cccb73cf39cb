"""EM file formats and conversions.

* :mod:`~orchestrator.em.mrc` - MRC maps, images and stacks (mrcfile), with clear errors;
* :mod:`~orchestrator.em.star` - STAR files (RELION 3.1 layout), read and written;
* :mod:`~orchestrator.em.relion` - particle sets <-> RELION particle STAR files with optics;
* :mod:`~orchestrator.em.optics` - the :class:`~orchestrator.em.optics.Optics` record;
* :mod:`~orchestrator.em.image_names` - ``000012@stack.mrcs`` names.

Nothing is imported here, so that ``import orchestrator.em.mrc`` does not pull in pandas.
"""
