"""Step functions of the emtools protocols: ``def f(ctx: StepContext, **json_args) -> dict | None``.

They read and write files and sets; the numerical work is in :mod:`emtools.kernels`.
"""
