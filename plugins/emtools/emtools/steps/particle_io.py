"""Reading a particle set's images and metadata, and writing refined particle sets.

Particles of one stack are read with one memory-mapped gather, stacks in the order they
first appear, and the images are returned in the set's row order.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from emtools.kernels import xp as xpmod
from emtools.kernels.ctf import CtfParams
from emtools.steps.common import EmtoolsStepError, optics_of, resolve, set_acquisition
from orchestrator.em import mrc
from orchestrator.protocol import SetReader, StepContext


def load_particles(ctx: StepContext, item_set: SetReader, start: int = 0,
                   stop: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray], CtfParams]:
    """Images ``(N, n, n)`` float32, all columns, and the optics of rows ``start:stop`` of a set."""
    acq = set_acquisition(item_set)
    columns = item_set.to_numpy()
    columns = {name: values[start:stop] for name, values in columns.items()}
    n = len(columns["id"])
    if n == 0:
        raise EmtoolsStepError(f"particle set {item_set.name!r} (id {item_set.id}) is empty")
    paths = columns["image_path"].astype(str)
    images: np.ndarray | None = None
    for path in dict.fromkeys(paths.tolist()):
        rows = np.flatnonzero(paths == path)
        part = mrc.read_stack_images(resolve(ctx, path), columns["image_index"][rows])
        if images is None:
            images = np.empty((n,) + part.shape[1:], dtype=np.float32)
        images[rows] = part
    assert images is not None
    return images, columns, optics_of(acq)


def gpu_module(ctx: StepContext, use_gpu: bool) -> ModuleType:
    """CuPy when the step asked for a GPU and was given one (and CuPy works), else NumPy."""
    if not use_gpu:
        return np
    xp = xpmod.get_xp(bool(ctx.gpus))
    if xp is np:
        ctx.log(f"use_gpu: no usable GPU here (given {ctx.gpus or 'none'}, CuPy "
                f"{'found' if xpmod.gpu_available() else 'missing'}); running on the CPU")
    else:
        ctx.log(f"use_gpu: running the kernels on GPU {ctx.gpus} with CuPy")
    return xp


def particle_columns_for_set(columns: Mapping[str, np.ndarray], updates: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A copy of ``columns`` with ``updates`` (new poses, classes, subsets) applied; ids kept."""
    out = {name: np.asarray(values) for name, values in columns.items()}
    for name, values in updates.items():
        out[name] = np.asarray(values)
    return out
