"""Fixtures of the RELION plugin tests (helpers live in ``relion_testdata``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from relion_testdata import SimulatedParticles, simulate


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's project list out of the tests."""
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "orch-home"))


@pytest.fixture(scope="session")
def small_particles(tmp_path_factory: pytest.TempPathFactory) -> SimulatedParticles:
    """300 particles, 32 px at 4 Å/px (Nyquist 8 Å), SNR 1, CTF with defocus 1-2.5 µm."""
    return simulate(tmp_path_factory.mktemp("sim"))
