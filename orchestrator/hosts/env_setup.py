"""A host's ``env_setup`` lines, for worker processes started on this machine: run them once,
keep the environment they leave.

On queue and SSH hosts the lines run in every job script or worker shell. The local host's
workers are not started by a shell (dask spawns them from the scheduler's process), so the
lines run once, in ``bash -c`` with ``set -e``, in the scheduler's environment (the one
``orch run`` or ``orch daemon`` started from: ``module`` works where that shell exported it, as
Lmod and Environment Modules do), and the variables they set or change are given to every
worker. A line that fails is an error naming the host and showing what the shell said. Only
environment variables pass to the workers (a shell function or alias the lines define does not
reach another process, as with any shell); variables the lines unset cannot be taken from the
workers, which keep the scheduler's value: the caller reports them (:class:`EnvironmentChange`).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.hosts.errors import HostError

ENV_SETUP_TIMEOUT_S = 120.0
#: bash's own bookkeeping, not something the lines set
_SHELL_VARIABLES = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})
_TAIL_LINES = 20
# After the lines: every exported variable as NAME=VALUE\0 into the file named by $1 (bash alone:
# a Python interpreter would add its own LC_CTYPE, PEP 538).
_DUMP = 'for orch_name in $(compgen -e); do printf \'%s=%s\\0\' "$orch_name" "${!orch_name}"; done > "$orch_out"'


class EnvSetupError(HostError):
    """A host's env_setup lines failed (or ran too long) on this machine."""


@dataclass(frozen=True)
class EnvironmentChange:
    """What ``env_setup`` did to the environment: variables set or changed, and unset."""

    changed: dict[str, str]
    unset: tuple[str, ...] = ()


def environment_after(lines: Sequence[str], *, where: str, env: Mapping[str, str] | None = None,
                      timeout_s: float = ENV_SETUP_TIMEOUT_S) -> EnvironmentChange:
    """Run ``lines`` once in bash and compare the environment they leave with ``env`` (default:
    this process's). ``where`` names the host (and its file) in errors."""
    base = dict(os.environ if env is None else env)
    if not lines:
        return EnvironmentChange({})
    script = "\n".join(["orch_out=$1", "set -e", *lines, _DUMP])
    with tempfile.TemporaryDirectory(prefix="orch-env-setup-") as folder:
        out = Path(folder) / "environment"
        try:
            done = subprocess.run(["bash", "-c", script, "orch-env-setup", str(out)], env=base,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise EnvSetupError(f"{where}: env_setup did not finish within {timeout_s:g} s") from None
        except OSError as exc:
            raise EnvSetupError(f"{where}: env_setup cannot run: bash: {exc.strerror or exc}") from None
        if done.returncode != 0 or not out.is_file():
            said = "\n".join((done.stderr or done.stdout).strip().splitlines()[-_TAIL_LINES:]) or "(no output)"
            raise EnvSetupError(f"{where}: env_setup failed (bash exited with {done.returncode}; a line that "
                                f"fails stops it): {said}")
        after = dict(entry.partition("=")[::2] for entry in
                     out.read_bytes().decode("utf-8", "surrogateescape").split("\0") if entry)
    changed = {k: v for k, v in after.items() if base.get(k) != v and k not in _SHELL_VARIABLES}
    unset = tuple(sorted(k for k in base if k not in after and k not in _SHELL_VARIABLES))
    return EnvironmentChange(changed, unset)

