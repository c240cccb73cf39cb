"""Pure numerical kernels: arrays in, arrays out, no files, no scheduler.

Particle side: ``ctf``, ``geometry``, ``projection``, ``reconstruction``, ``fsc``,
``filters``, ``phantom``, ``simulate_particles``, ``matching`` (pose search),
``refinement``, ``classify2d``.
Micrograph side: ``movies``, ``motion``, ``ctffind``, ``picking``, ``extraction``.
``xp`` switches between NumPy and CuPy.
"""
