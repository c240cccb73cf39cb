"""Running the Scipion anchor scripts (../shared/anchors/scipion) from our benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ANCHOR_DIR = (Path(__file__).resolve().parents[1] / ".." / "shared" / "anchors" / "scipion").resolve()


def run_anchor(script: str, args: list[str], timeout_s: float | None = None) -> str | None:
    """stdout of ``python SCRIPT ARGS`` in the anchor's environment (set up on first use).

    None, with the reason on stderr, when the anchor is missing, fails or runs past
    ``timeout_s``: our own figures are already printed and must not be lost to it.
    """
    if not (ANCHOR_DIR / script).exists():
        print(f"# anchor not found at {ANCHOR_DIR}", file=sys.stderr)
        return None
    root = os.environ.get("BENCH_ROOT", "/tmp/scipion-anchor")
    if not Path(root, "venv", "bin", "python").exists():
        subprocess.run(["bash", str(ANCHOR_DIR / "setup.sh")], check=True)
    command = f"source {ANCHOR_DIR}/env.sh && cd {ANCHOR_DIR} && python {script} {' '.join(args)}"
    try:
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        print(f"# anchor {script} {' '.join(args)}: no result within {timeout_s:.0f} s", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"# anchor {script} {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}",
              file=sys.stderr)
        return None
    return done.stdout
