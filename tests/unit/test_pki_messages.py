"""`zk0 pki ...` says what it kept and what was exposed, and names wrong key formats and
unwritable places instead of raising tracebacks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner

from zk0.cli import app
from zk0.deploy import pki

runner = CliRunner()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_rerun_says_the_key_was_kept(tmp_path: Path) -> None:
    first = runner.invoke(app, ["pki", "node-key", "--dir", str(tmp_path)])
    assert first.exit_code == 0 and "kept" not in first.output
    key = (tmp_path / pki.NODE_KEY).read_bytes()
    again = runner.invoke(app, ["pki", "node-key", "--dir", str(tmp_path)])
    assert again.exit_code == 0 and f"kept the existing key {tmp_path / pki.NODE_KEY}" in again.stdout
    assert (tmp_path / pki.NODE_KEY).read_bytes() == key
    assert pki.create_ca(tmp_path).report.notes == []
    assert pki.create_ca(tmp_path).report.notes == [f"kept the existing key {tmp_path / pki.CA_KEY}"]
    server = pki.create_superlink_cert(tmp_path, ["link.example.org"])
    assert server.report.notes == []
    again_server = pki.create_superlink_cert(tmp_path, ["link.example.org"])
    assert again_server.report.notes == [f"kept the existing key {tmp_path / pki.SUPERLINK_KEY}"]


def test_a_loose_key_is_tightened_and_called_exposed(tmp_path: Path) -> None:
    files = pki.create_node_key(tmp_path)
    files.private_key.chmod(0o644)
    result = runner.invoke(app, ["pki", "node-key", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (
        f"warning: {files.private_key} was readable by others (mode 0644): tightened to 0600; "
        "consider it exposed and make a new one"
    ) in result.stderr
    assert _mode(files.private_key) == 0o600
    assert "warning" not in runner.invoke(app, ["pki", "node-key", "--dir", str(tmp_path)]).stderr
    ca = pki.create_ca(tmp_path / "ca")
    ca.key.chmod(0o640)
    warnings = pki.create_superlink_cert(tmp_path / "link", ["x.example.org"], tmp_path / "ca").report.warnings
    assert len(warnings) == 1 and "ca.key was readable by others (mode 0640)" in warnings[0]


def _pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _openssh(key) -> bytes:
    fmt = serialization.PrivateFormat.OpenSSH
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


@pytest.mark.parametrize(
    ("name", "content", "command", "expected"),
    [
        (pki.NODE_KEY, lambda: _pem(ec.generate_private_key(ec.SECP384R1())), "node-key", "not an OpenSSH private key"),
        (pki.CA_KEY, lambda: _openssh(ec.generate_private_key(ec.SECP384R1())), "ca", "not a PEM private key"),
        (pki.CA_KEY, lambda: _pem(rsa.generate_private_key(65537, 2048)), "ca", "not an ECDSA P-384 key"),
        (pki.CA_KEY, lambda: _pem(ec.generate_private_key(ec.SECP256R1())), "ca", "not an ECDSA P-384 key"),
        (pki.NODE_KEY, lambda: b"ssh-ed25519 AAAA not a private key\n", "node-key", "not an OpenSSH private key"),
        (pki.CA_KEY, None, "ca", "exists but is not a file"),
    ],
)
def test_wrong_key_formats_are_named_and_kept(tmp_path: Path, name, content, command, expected) -> None:
    if content is None:
        (tmp_path / name).mkdir()
    else:
        (tmp_path / name).write_bytes(content())
    before = (tmp_path / name).read_bytes() if content else None
    result = runner.invoke(app, ["pki", command, "--dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and expected in result.stderr, result.stderr
    assert "move it away" in result.stderr
    if before is not None:
        assert (tmp_path / name).read_bytes() == before  # never overwritten


def test_a_garbage_ca_certificate_is_named(tmp_path: Path) -> None:
    pki.create_ca(tmp_path)
    (tmp_path / pki.CA_CERT).write_text("garbage\n")
    result = runner.invoke(app, ["pki", "superlink-cert", "--dir", str(tmp_path), "--san", "link.example.org"])
    assert result.exit_code == 1 and "ca.pem is not a readable PEM certificate" in result.stderr


def test_unwritable_and_non_directory_places(tmp_path: Path, monkeypatch) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(pki.PKIError, match="is a file, not a directory"):
        pki.create_node_key(a_file)
    with pytest.raises(pki.PKIError, match="a part of its path is a file"):
        pki.create_ca(a_file / "ca")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path / "ro" and real_access(path, mode))
    (tmp_path / "ro").mkdir()
    with pytest.raises(pki.PKIError, match="is not writable by this user"):
        pki.create_node_key(tmp_path / "ro")
    assert list((tmp_path / "ro").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through a 0500 directory")
def test_a_read_only_directory_is_named(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    try:
        result = runner.invoke(app, ["pki", "ca", "--dir", str(ro)])
        assert result.exit_code == 1 and "is not writable by this user" in result.stderr
        result = runner.invoke(app, ["pki", "ca", "--dir", str(ro / "sub")])
        assert result.exit_code == 1 and "cannot create directory" in result.stderr
    finally:
        ro.chmod(0o700)
