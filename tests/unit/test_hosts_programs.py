"""``[hosts.NAME.programs]``: how a program starts on a host, validated where the hosts file is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.hosts.config.loader import parse_hosts
from orchestrator.hosts.errors import HostConfigError

GOOD = """
[hosts.local]
kind = "local"
[hosts.local.programs]
mpirun = ["mpirun", "--oversubscribe"]

[hosts.gpu]
kind = "ssh"
shared_fs = true
[hosts.gpu.ssh]
host = "gpu.example.org"
[hosts.gpu.programs]
mpirun = ["srun", "--mpi=pmix", "-n", "{ranks}"]
"relion_refine" = ["/opt/relion-4/bin/relion_refine"]
"""


def test_programs_are_read_as_argument_lists() -> None:
    hosts = parse_hosts(GOOD, Path("hosts.toml"))
    assert hosts["local"].programs == {"mpirun": ("mpirun", "--oversubscribe")}
    assert hosts["gpu"].programs["mpirun"] == ("srun", "--mpi=pmix", "-n", "{ranks}")
    assert hosts["gpu"].to_dict()["programs"]["relion_refine"] == ["/opt/relion-4/bin/relion_refine"]
    assert parse_hosts('[hosts.local]\nkind = "local"\n', Path("h.toml"))["local"].programs == {}


def test_every_bad_program_is_reported_with_its_key() -> None:
    text = """
[hosts.local]
kind = "local"
[hosts.local.programs]
mpirun = "mpirun -np 4"
"bad name" = ["x"]
empty = []
blank = ["", "-n"]
multi = ["mpirun", "a\\nb"]
numbers = ["mpirun", 4]
"""
    with pytest.raises(HostConfigError) as caught:
        parse_hosts(text, Path("hosts.toml"))
    message = str(caught.value)
    assert message.startswith("6 problem(s) in hosts file hosts.toml:")
    for expected in (
        "hosts.toml: host 'local': key 'programs.mpirun': must be a non-empty list of strings (the command's words), "
        "got 'mpirun -np 4'",
        "key 'programs.bad name': is not a valid program name",
        "key 'programs.empty': must be a non-empty list of strings",
        "key 'programs.blank': must start with the program to run",
        "key 'programs.multi': must be one line",
        "key 'programs.numbers': must be a string, got 4",
    ):
        assert expected in message
    with pytest.raises(HostConfigError, match="key 'programs': must be a table"):
        parse_hosts('[hosts.local]\nkind = "local"\nprograms = ["mpirun"]\n', Path("hosts.toml"))
