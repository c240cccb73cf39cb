#!/usr/bin/env bash
# Rebuilds the RELION-written fixtures in this folder (see README.md). Needs RELION 3.1
# (Debian: apt-get install relion openmpi-bin) and the project's .venv. Run from anywhere.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
PYTHONPATH="$repo" "$repo/.venv/bin/python" "$here/make_inputs.py" ours_angles.star
relion_project --i map.mrc --ang ours_angles.star --o proj --ctf > /dev/null
relion_star_handler --i proj.star --o subset1.star --select rlnRandomSubset --minval 1 --maxval 1 > /dev/null
cp "$here/relion30_particles.star" .
relion_convert_star --i relion30_particles.star --o relion31_converted.star > /dev/null
relion_image_handler --i map.mrc --o map_bin2.mrc --rescale_angpix 4 > /dev/null
PYTHONPATH="$repo" "$repo/.venv/bin/python" - <<'PY'
import numpy as np
from orchestrator.em.mrc import read_volume, write_volume
volume = read_volume("map.mrc")
noise = np.random.default_rng(1)
for half in (1, 2):
    write_volume(f"half{half}.mrc", volume + 0.05 * noise.standard_normal(volume.shape).astype(np.float32), 2.0)
PY
relion_mask_create --i map.mrc --o mask.mrc --ini_threshold 0.05 --extend_inimask 2 --width_soft_edge 3 > /dev/null
mkdir PostProcess
relion_postprocess --i half1.mrc --i2 half2.mrc --mask mask.mrc --angpix 2 --o PostProcess/postprocess \
    --auto_bfac false --adhoc_bfac 0 > /dev/null
cp ours_angles.star proj.star proj.mrcs subset1.star relion31_converted.star map_bin2.mrc \
    PostProcess/postprocess.star "$here/"
echo "fixtures rebuilt in $here"
