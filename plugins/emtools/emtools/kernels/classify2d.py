"""Reference-free 2D classification by iterative multi-reference alignment.

Classes start as averages of random, disjoint subsets of the particles, so no external
template can bias them. Each iteration:

1. the K class averages are low-passed, masked and rotated over an in-plane grid of
   ``angle_step_deg``; each rotated template is normalised to unit power;
2. every particle is cross-correlated with every rotated template through one batched
   ``irfft2`` (all translations at once), and takes the class, angle and translation
   (within ``max_shift_px``) of the highest correlation: hard assignment, as CL2D does;
3. each class average is recomputed from its particles brought back into the class
   frame (shift, then rotation, both inverted).

Classes that empty out are re-seeded from half of the most populated class, so K stays
meaningful. Particles should be CTF phase-flipped (``phase_flip``) because averaging
images with opposite contrast at some frequencies would cancel signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from . import xp as xpmod
from .ctf import CtfParams, ctf_2d_stack
from .filters import fourier_shift_2d, rfft_grid_2d, rotate_images, soft_spherical_mask


class ClassificationInputError(ValueError):
    """Images and settings that cannot be classified (e.g. fewer particles than classes)."""


@dataclass
class Classification2DResult:
    """Class averages ``(K, n, n)`` and per-particle assignment.

    ``psi`` (degrees) and ``origins`` ``(N, 2)`` (pixels) follow RELION: the particle is
    its class average transformed as a projection with Euler angles (0, 0, psi) would be
    (``filters.rotate_images(average, -psi)``), then moved by ``-origin``.
    """

    class_averages: np.ndarray
    class_ids: np.ndarray
    psi: np.ndarray
    origins: np.ndarray
    scores: np.ndarray
    changed_fraction: list[float] = field(default_factory=list)


def phase_flip(
    images: Any, optics: CtfParams, defocus_u: Any, defocus_v: Any, defocus_angle: Any, xp: ModuleType = np
) -> Any:
    """Multiply each image's Fourier transform by the sign of its CTF."""
    n = images.shape[-1]
    ctf = ctf_2d_stack(optics, defocus_u, defocus_v, defocus_angle, (n, n), xp=xp)
    ft = xpmod.centered_rfft2(xp.asarray(images, dtype=xp.float32), xp) * xp.sign(ctf)
    return xpmod.centered_irfft2(ft, (n, n), xp).astype(xp.float32)


def _lowpass_2d(images: Any, radius_px: float, xp: ModuleType) -> Any:
    n = images.shape[-1]
    ky, kx = rfft_grid_2d(n, xp)
    t = xp.clip((xp.sqrt(kx * kx + ky * ky) - radius_px) / 2.0, 0.0, 1.0)
    filt = 0.5 * (1.0 + xp.cos(np.pi * t))
    return xp.fft.irfft2(xp.fft.rfft2(images, axes=(-2, -1)) * filt, s=(n, n), axes=(-2, -1))


def align_to_references(
    images_ft: Any, references: Any, angles_deg: np.ndarray, max_shift_px: float, batch: int = 32
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best (class, angle index, origin (dx, dy), score) of each particle against every
    reference rotated by every angle, all translations inside ``max_shift_px``."""
    xp = xpmod.array_module(images_ft)
    n_ref, n = references.shape[0], references.shape[-1]
    n_ang = len(angles_deg)
    rot = rotate_images(xp.repeat(references, n_ang, axis=0), np.tile(angles_deg, n_ref), xp=xp)
    rot = rot / xp.sqrt(xp.maximum((rot * rot).sum(axis=(1, 2), keepdims=True), 1e-30))
    t_ft = xpmod.centered_rfft2(rot, xp)  # (K*A, n, nh)
    yy, xx = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    allowed = xp.asarray(np.hypot(xx, yy) <= max_shift_px).reshape(-1)
    n_img = images_ft.shape[0]
    best_t = np.empty(n_img, dtype=np.int64)
    best_pos = np.empty(n_img, dtype=np.int64)
    best = np.empty(n_img)
    for b in range(0, n_img, batch):
        x = images_ft[b : b + batch]
        # irfft2(X conj(T))(s) = <X, T moved by s>: one map per (particle, template)
        cc = xp.fft.irfft2(x[:, None] * xp.conj(t_ft)[None], s=(n, n), axes=(-2, -1))
        cc = xp.fft.fftshift(cc, axes=(-2, -1)).reshape(x.shape[0], n_ref * n_ang, n * n)
        cc = xp.where(allowed[None, None], cc, -xp.inf)
        flat = cc.reshape(x.shape[0], -1)
        arg = xpmod.to_numpy(xp.argmax(flat, axis=1))
        best[b : b + batch] = xpmod.to_numpy(flat[xp.arange(x.shape[0]), xp.asarray(arg)])
        best_t[b : b + batch] = arg // (n * n)
        best_pos[b : b + batch] = arg % (n * n)
    dy = best_pos // n - n // 2
    dx = best_pos % n - n // 2
    # the particle matches the template moved by (dx, dy): its rlnOrigin is the opposite
    origins = -np.stack([dx, dy], axis=1).astype(np.float64)
    return best_t // n_ang, best_t % n_ang, origins, best


def class_averages(
    images_ft: Any, class_ids: np.ndarray, psi: np.ndarray, origins: np.ndarray, n_classes: int
) -> Any:
    """Average of each class's particles brought into the class frame (``(K, n, n)``)."""
    xp = xpmod.array_module(images_ft)
    n = images_ft.shape[-2]
    centred = xpmod.centered_irfft2(fourier_shift_2d(images_ft, xp.asarray(origins), xp), (n, n), xp)
    aligned = rotate_images(centred, psi, xp=xp)
    ids = xp.asarray(class_ids)
    out = xp.zeros((n_classes, n, n), dtype=xp.float32)
    for k in range(n_classes):
        members = ids == k
        if bool(members.any()):
            out[k] = aligned[members].mean(axis=0)
    return out


def classify_2d(
    images: np.ndarray,
    n_classes: int,
    n_iterations: int = 12,
    angle_step_deg: float = 10.0,
    max_shift_px: float = 4.0,
    mask_radius_px: float | None = None,
    lowpass_radius_px: float | None = None,
    converged_fraction: float = 0.005,
    seed: int = 0,
    xp: ModuleType = np,
) -> Classification2DResult:
    """Classify ``images`` ``(N, n, n)`` (phase-flipped if they carry a CTF) into ``n_classes``.

    ``lowpass_radius_px`` (default n/6, index units) limits the class averages so the
    first iterations are driven by shape rather than by aligned noise. Stops early once
    fewer than ``converged_fraction`` of the particles change class twice in a row.
    """
    n_img, n = images.shape[0], images.shape[-1]
    if n_img < 2 * n_classes:
        raise ClassificationInputError(f"{n_img} particles are too few for {n_classes} classes")
    rng = np.random.default_rng(seed)
    mask = soft_spherical_mask((n, n), mask_radius_px or 0.42 * n, 3.0, xp)
    lp = lowpass_radius_px or n / 6
    imgs = xp.asarray(images, dtype=xp.float32)
    imgs = (imgs - imgs.mean(axis=(1, 2), keepdims=True)) / xp.maximum(
        imgs.std(axis=(1, 2), keepdims=True), 1e-12
    )
    ft = xpmod.centered_rfft2(imgs, xp)
    angles = np.arange(0.0, 360.0, angle_step_deg)

    ids = rng.permutation(n_img) % n_classes
    psi = np.zeros(n_img)
    origins = np.zeros((n_img, 2))
    refs = class_averages(ft, ids, psi, origins, n_classes)
    changed: list[float] = []
    scores = np.zeros(n_img)
    for _ in range(n_iterations):
        refs = _lowpass_2d(refs, lp, xp) * mask
        new_ids, a_idx, origins, scores = align_to_references(ft, refs, angles, max_shift_px)
        changed.append(float((new_ids != ids).mean()))
        # a template rotated counter-clockwise by `angle` is the RELION psi = -angle view
        ids, psi = new_ids, -angles[a_idx]
        ids = _reseed_empty(ids, n_classes, rng)
        refs = class_averages(ft, ids, psi, origins, n_classes)
        if len(changed) >= 2 and max(changed[-2:]) < converged_fraction:
            break
    return Classification2DResult(
        class_averages=xpmod.to_numpy(refs),
        class_ids=ids,
        psi=psi,
        origins=origins,
        scores=scores,
        changed_fraction=changed,
    )


def _reseed_empty(ids: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Give each empty class a random half of the currently largest class."""
    ids = ids.copy()
    for k in range(n_classes):
        if np.any(ids == k):
            continue
        largest = int(np.argmax(np.bincount(ids, minlength=n_classes)))
        members = np.flatnonzero(ids == largest)
        ids[rng.choice(members, size=len(members) // 2, replace=False)] = k
    return ids


def class_purity(class_ids: np.ndarray, true_labels: np.ndarray) -> float:
    """Fraction of particles whose class's majority label is their own label."""
    total = 0
    for k in np.unique(class_ids):
        labels = true_labels[class_ids == k]
        total += np.bincount(labels).max()
    return total / len(class_ids)
