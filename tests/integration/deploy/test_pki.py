"""PKI files: formats Flower loads, modes, idempotence, SANs; the admin connection file."""

from __future__ import annotations

import datetime as dt
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from zk0.deploy import connection, launch, pki


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_and_superlink_cert(tmp_path: Path) -> None:
    ca = pki.create_ca(tmp_path)
    server = pki.create_superlink_cert(tmp_path, ["link.example.org", "10.0.0.5"])
    assert _mode(ca.key) == 0o600 and _mode(server.key) == 0o600
    cert = pki.load_cert(server.cert)
    # 127.0.0.1 is always there: the SuperLink's own SuperExec connects to it; superlink is the
    # Compose service name a proxy in the server stack verifies.
    assert pki.cert_sans(cert) == {"link.example.org", "10.0.0.5", "127.0.0.1", "localhost", "superlink"}
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=pki.LEAF_DAYS, minutes=5)
    assert pki.LEAF_DAYS == 90 and pki.RENEW_DAYS == 30  # superlink_cert_days / _renew_days
    assert cert.issuer == pki.load_cert(ca.cert).subject
    pki.load_cert(ca.cert).public_key().verify(  # signed by the CA
        cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
    )
    # Idempotent: same files, same bytes.
    before = {p: p.read_bytes() for p in (ca.cert, ca.key, server.cert, server.key)}
    pki.create_ca(tmp_path)
    pki.create_superlink_cert(tmp_path, ["link.example.org"])
    assert {p: p.read_bytes() for p in before} == before
    # A new SAN re-issues the certificate with the same key.
    pki.create_superlink_cert(tmp_path, ["link.example.org", "10.0.0.5", "vpn.example.org"])
    assert "vpn.example.org" in pki.cert_sans(pki.load_cert(server.cert))
    assert server.key.read_bytes() == before[server.key]


def test_superlink_cert_is_renewed_before_expiry(tmp_path: Path) -> None:
    pki.create_ca(tmp_path)
    server = pki.create_superlink_cert(tmp_path, ["link.example.org"], days=40, renew_days=30)
    first = server.cert.read_bytes()
    first_end, key = pki.load_cert(server.cert).not_valid_after_utc, server.key.read_bytes()
    pki.create_superlink_cert(tmp_path, ["link.example.org"], days=40, renew_days=30)
    assert server.cert.read_bytes() == first  # 40 days left > 30: kept
    # Expires within the window: re-issued with the same key and a fresh lifetime.
    pki.create_superlink_cert(tmp_path, ["link.example.org"], days=90, renew_days=45)
    renewed = pki.load_cert(server.cert)
    assert server.cert.read_bytes() != first and server.key.read_bytes() == key
    assert renewed.not_valid_after_utc - first_end > dt.timedelta(days=49)
    with pytest.raises(pki.PKIError, match="less than"):
        pki.create_superlink_cert(tmp_path, ["x"], days=30, renew_days=30)


def test_node_key_is_what_flower_loads(tmp_path: Path) -> None:
    files = pki.create_node_key(tmp_path / "node")
    assert _mode(files.private_key) == 0o600
    # flower-supernode --auth-supernode-private-key: load_ssh_private_key; P-384.
    key = serialization.load_ssh_private_key(files.private_key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    # flwr supernode register: the CLI's own loader accepts the public key.
    from flwr.cli.supernode.register import try_load_public_key

    assert try_load_public_key(files.public_key).startswith(b"-----BEGIN PUBLIC KEY-----")
    again = pki.create_node_key(tmp_path / "node")
    assert again.private_key.read_bytes() == files.private_key.read_bytes()


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_node_key_matches_ssh_keygen_and_existing_keys_are_kept(tmp_path: Path) -> None:
    files = pki.create_node_key(tmp_path)
    out = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(files.private_key)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and out.stdout.split()[:2] == files.public_key.read_text().split()[:2]
    # A key made by ssh-keygen is kept as the node's key.
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-f", str(other / pki.NODE_KEY)], check=True
    )
    original = (other / pki.NODE_KEY).read_bytes()
    pki.create_node_key(other)
    assert (other / pki.NODE_KEY).read_bytes() == original


def test_invalid_or_loose_existing_keys(tmp_path: Path) -> None:
    bad = tmp_path / pki.NODE_KEY
    bad.write_text("not a key")
    with pytest.raises(pki.PKIError, match="not overwritten"):
        pki.create_node_key(tmp_path)
    assert bad.read_text() == "not a key"
    loose = tmp_path / "loose"
    files = pki.create_node_key(loose)
    files.private_key.chmod(0o644)
    pki.create_node_key(loose)
    assert _mode(files.private_key) == 0o600
    with pytest.raises(pki.PKIError, match="No CA"):
        pki.create_superlink_cert(tmp_path / "nothing", ["x"])


def test_connection_file_is_what_flwr_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = pki.create_ca(tmp_path / "ca")
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text('[superlink]\ndefault = "other"\n\n[superlink.other]\naddress = "x:1"\n')
    connection.write_connection("zk0", "link.example.org:8000", ca.cert, home=home)
    monkeypatch.setenv("FLWR_HOME", str(home))
    from flwr.cli.flower_config import read_superlink_connection

    conn = read_superlink_connection("zk0")
    assert conn.address == "link.example.org:8000" and conn.root_certificates == str(ca.cert)
    assert read_superlink_connection(None).name == "zk0"  # made the default
    assert read_superlink_connection("other").address == "x:1"  # others kept
    with pytest.raises(ValueError, match="HOST:PORT"):
        connection.write_connection("zk0", "no-port", ca.cert, home=home)


def test_launch_flags(tmp_path: Path) -> None:
    link = launch.SuperLinkSpec(tmp_path / "ca.pem", tmp_path / "s.pem", tmp_path / "s.key", tmp_path / "state.db")
    argv = link.argv()
    for flag in ("--enable-supernode-auth", "--disable-runtime-dependency-installation", "--database"):
        assert flag in argv
    assert argv[argv.index("--host") + 1] == "0.0.0.0" and argv[argv.index("--port") + 1] == "8000"
    assert "--insecure" not in argv
    node = launch.SuperNodeSpec(
        "link:8000",
        tmp_path / "ca.pem",
        tmp_path / "k",
        {"dataset-uri": "local:/data/a b"},
        port=9095,
        max_wait_time=60,
    )
    argv = node.argv()
    assert argv[argv.index("--node-config") + 1] == 'dataset-uri="local:/data/a b"'
    from flwr.common.config import parse_config_args

    assert parse_config_args([argv[argv.index("--node-config") + 1]]) == {"dataset-uri": "local:/data/a b"}
    assert argv[argv.index("--port") + 1] == "9095" and "--max-wait-time" in argv
    # zk0-supernode by default (it adds --isolation process itself); Flower's own on request.
    assert Path(argv[0]).name == "zk0-supernode" and "--isolation" not in argv
    cold = launch.SuperNodeSpec("link:8000", None, None, warm_clientapps=False).argv()
    assert Path(cold[0]).name == "flower-supernode" and cold[1:3] == ["--superlink", "link:8000"]
