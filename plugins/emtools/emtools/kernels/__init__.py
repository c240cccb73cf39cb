"""Pure numerical kernels: arrays in, arrays out, no files, no scheduler.

Particle side: ``ctf``, ``geometry``, ``projection``, ``reconstruction``, ``fsc``,
``filters``, ``phantom``, ``simulate_particles``, ``matching`` (pose search),
``refinement``, ``classify2d``.
Micrograph side: ``movies``, ``motion``, ``ctffind``, ``picking``, ``extraction``.
``xp`` switches between NumPy and CuPy.

SciPy is imported inside the functions that use it, never at module level: plugin discovery
imports every protocol, hence these modules, in each ``orch`` command and scheduler start, and
``scipy.signal`` and ``scipy.stats`` alone took a second of that on 2 cores.
"""
