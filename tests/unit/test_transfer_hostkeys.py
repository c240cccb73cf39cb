"""Host key checks and SSH targets, without a server: what is accepted, refused, and said."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest

from orchestrator.hosts.config.model import SshConfig
from orchestrator.hosts.ssh.client import check_host_key, fingerprint
from orchestrator.hosts.ssh.target import HostKeyMismatchError, HostKeyUnknownError, SSHTarget


def _key(tmp_path: Path, name: str) -> paramiko.PKey:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
    return paramiko.PKey.from_path(tmp_path / name)


def test_fingerprint_is_what_ssh_keygen_prints(tmp_path: Path) -> None:
    key = _key(tmp_path, "k")
    listed = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], capture_output=True, text=True,
                            check=True).stdout.split()[1]
    assert fingerprint(key) == listed


def test_host_keys_known_unknown_and_changed(tmp_path: Path) -> None:
    key, other = _key(tmp_path, "host"), _key(tmp_path, "other")
    target = SSHTarget("gpu1.lab", 2222, "me", None, tmp_path / "known_hosts")
    known = paramiko.HostKeys()
    with pytest.raises(HostKeyUnknownError) as caught:
        check_host_key(target, known, key)
    message = str(caught.value)
    assert fingerprint(key) in message and "refused" in message
    assert f"ssh-keyscan -p 2222 -t ed25519 gpu1.lab >> {tmp_path / 'known_hosts'}" in message
    known.add("[gpu1.lab]:2222", key.get_name(), key)
    check_host_key(target, known, key)  # accepted
    with pytest.raises(HostKeyMismatchError, match="HOST KEY CHANGED"):
        check_host_key(target, known, other)
    on_22 = SSHTarget("gpu1.lab", 22)
    assert on_22.host_key_name == "gpu1.lab"
    with pytest.raises(HostKeyUnknownError):  # the entry is for port 2222 only
        check_host_key(on_22, known, key)


def test_target_from_host_configuration(tmp_path: Path) -> None:
    config = SshConfig(host="gpu1.lab", port=2200, user="em", key=tmp_path / "id", known_hosts=tmp_path / "kh")
    target = SSHTarget.from_config(config)
    assert target == SSHTarget("gpu1.lab", 2200, "em", tmp_path / "id", tmp_path / "kh")
    assert target.label == "em@gpu1.lab:2200"
    assert SSHTarget("h").known_hosts_file == Path.home() / ".ssh" / "known_hosts"
