"""Inputs for the RELION fixture run: a small asymmetric map and a particle STAR of ours."""

import sys

import numpy as np

from orchestrator.em.mrc import write_volume
from orchestrator.em.optics import Optics
from orchestrator.em.relion import particles_to_star

box, pixel = 24, 2.0
z, y, x = np.mgrid[:box, :box, :box] - box / 2
blobs = [((0, 0, 0), 3.0, 1.0), ((5, -3, 2), 2.0, 0.8), ((-4, 4, -1), 1.5, 0.6), ((2, 6, -5), 1.2, 0.5)]
vol = np.zeros((box, box, box))
for (cz, cy, cx), sigma, amp in blobs:
    vol += amp * np.exp(-((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))
write_volume("map.mrc", vol.astype(np.float32), pixel)

n = 6
columns = {
    "id": np.arange(101, 101 + n),
    "micrograph_name": np.array([f"Micrographs/mic{(i // 3) + 1:03d}.mrc" for i in range(n)]),
    "coord_x": np.array([100.5, 220.0, 340.25, 80.0, 160.0, 240.0], dtype=np.float32),
    "coord_y": np.array([50.0, 150.5, 250.0, 90.0, 190.0, 290.75], dtype=np.float32),
    "defocus_u": np.array([15000, 16000, 17000, 21000, 22000, 23000], dtype=np.float32),
    "defocus_v": np.array([14500, 15500, 16400, 20500, 21200, 22900], dtype=np.float32),
    "defocus_angle": np.array([10, 20, 30, 40, 50, 60], dtype=np.float32),
    "rot": np.array([0, 30, -60, 90, 120.5, -150], dtype=np.float32),
    "tilt": np.array([0, 45, 90, 135, 60.25, 20], dtype=np.float32),
    "psi": np.array([0, -30, 60, 170, -90, 15.5], dtype=np.float32),
    "shift_x": np.array([0, 1.5, -2.0, 0.25, 3.0, -1.0], dtype=np.float32),
    "shift_y": np.array([0, -0.5, 2.5, 1.0, -3.0, 0.75], dtype=np.float32),
    "class_id": np.array([1, 2, 1, 2, 1, 2], dtype=np.int32),
    "subset": np.array([1, 2, 1, 2, 1, 2], dtype=np.int8),
}
optics = [
    Optics(
        group=1,
        name="opticsGroup1",
        voltage_kv=300.0,
        cs_mm=2.7,
        amplitude_contrast=0.1,
        pixel_size_a=pixel,
        image_size=box,
    )
]
particles_to_star(columns, optics, sys.argv[1] if len(sys.argv) > 1 else "ours_angles.star")
