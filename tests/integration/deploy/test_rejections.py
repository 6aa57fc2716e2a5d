"""What the SuperLink must refuse: unknown keys, SuperNodes without the federation's CA,
plaintext clients. One TLS SuperLink with node auth serves the whole module."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zk0.deploy import enrollment, launch, pki
from zk0.deploy.loopback import CONNECTION, Credentials, Loopback, flwr_json

pytestmark = pytest.mark.timeout(120)

# Bounded retries so a refused SuperNode gives up instead of retrying forever.
BOUNDED = {"max_retries": 2, "max_wait_time": 20.0}


@pytest.fixture(scope="module")
def link(tmp_path_factory: pytest.TempPathFactory, creds: Credentials) -> Iterator[Loopback]:
    fed = Loopback(tmp_path_factory.mktemp("rejections"), creds)
    try:
        fed.start_superlink()
        yield fed
    finally:
        fed.close()


def _exit_code(proc: launch.Process, timeout: float) -> int:
    try:
        return proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # still running: that is a failure of the rejection
        pytest.fail(f"{proc.name} still running after {timeout} s:\n{proc.output()[-2000:]}")


def _online_ids(link: Loopback) -> set[int]:
    return {n.node_id for n in link.nodes() if n.status == "online"}


def test_unregistered_supernode_is_refused(link: Loopback) -> None:
    key = link.creds.node("stranger")  # valid key pair, never registered
    proc = link.start_node("stranger", link.node_spec(key, {"node-tag": 9}, **BOUNDED))
    code = _exit_code(proc, 60)
    assert code != 0, proc.output()
    assert "SuperNode ID" not in proc.output()  # it never got a node id
    assert "Failed to activate SuperNode" in proc.output()
    assert not _online_ids(link)


def test_supernode_with_wrong_ca_cannot_connect(link: Loopback, tmp_path: Path) -> None:
    rogue_ca = pki.create_ca(tmp_path / "rogue-ca", "not the federation CA")
    key = link.creds.node("wrong-ca")
    assert link.register(key).changed  # authorised key: only the CA is wrong
    spec = link.node_spec(key, {"node-tag": 8}, root_certificates=rogue_ca.cert, **BOUNDED)
    proc = link.start_node("wrong-ca", spec)
    code = _exit_code(proc, 90)
    assert code != 0, proc.output()
    assert "SuperNode ID" not in proc.output()
    assert "CERTIFICATE_VERIFY_FAILED" in proc.output() or "certificate verify failed" in proc.output()
    assert not _online_ids(link)


def test_plaintext_supernode_cannot_talk_to_tls_superlink(link: Loopback) -> None:
    # No auth key either: flower-supernode refuses `--insecure` together with a key locally,
    # so this is the plaintext client that reaches the SuperLink's port.
    spec = link.node_spec(None, {"node-tag": 7}, root_certificates=None, insecure=True, **BOUNDED)
    proc = link.start_node("plaintext", spec)
    code = _exit_code(proc, 90)
    assert code != 0, proc.output()
    assert "SuperNode ID" not in proc.output()
    # Flower's own port drops the connection; the proxy answers plain HTTP on its TLS port with 400.
    assert "Server disconnected without sending a response" in proc.output() or "400 Bad Request" in proc.output()
    assert not _online_ids(link)


def test_plaintext_admin_and_raw_http_are_refused(link: Loopback) -> None:
    # A plain-HTTP request on the TLS port gets no HTTP answer, or the proxy's 400 "plain HTTP to HTTPS port".
    with socket.create_connection(("127.0.0.1", link.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        try:
            reply = sock.recv(100)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    assert not reply.startswith(b"HTTP/1.1 200")
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400") or b"SSL" in reply, reply
    # The TLS port really is TLS with the federation's certificate.
    ctx = ssl.create_default_context(cafile=str(link.creds.server.ca_cert))
    with (
        socket.create_connection(("127.0.0.1", link.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # An admin connection marked insecure cannot list runs.
    home = link.base / "plain-admin"
    (home).mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "plain"\n\n[superlink.plain]\naddress = "{link.address}"\ninsecure = true\n'
    )
    start = time.monotonic()
    result = flwr_json(["ls", "plain"], launch.flower_env(home), timeout=60)
    assert result.get("success") is False, result
    assert time.monotonic() - start < 60


def test_enrollment_commands_are_idempotent(link: Loopback, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from zk0.cli import app

    monkeypatch.setenv("FLWR_HOME", str(link.admin_home))
    runner = CliRunner()
    key = link.creds.node("enrolled")
    conn = ["--superlink", CONNECTION]

    def zk0(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.stdout if "--json" in args else result.output

    code, out = zk0("node", "register", str(key.public_key), *conn)
    assert code == 0 and "registered as node" in out, out
    code, again = zk0("node", "register", str(key.public_key), *conn)
    assert code == 0 and "already registered" in again, again
    code, listed = zk0("node", "list", *conn, "--json")
    fingerprints = {n["fingerprint"]: n for n in json.loads(listed)}
    assert code == 0 and fingerprints[enrollment.fingerprint(enrollment.load_public_key(key.public_key))]
    code, out = zk0("node", "unregister", str(key.public_key), *conn)
    assert code == 0 and "unregistered node" in out, out
    code, out = zk0("node", "unregister", str(key.public_key), *conn)
    assert code == 0 and "already unregistered" in out, out
    # Flower keeps an unregistered key reserved: registering it again fails and says what to do.
    code, out = zk0("node", "register", str(key.public_key), *conn)
    assert code == 1 and "new key pair" in out, out


@pytest.mark.timeout(480)
def test_a_node_the_admin_removes_stops_so_its_restart_policy_can_act(link: Loopback) -> None:
    # The SuperLink answers a removed (or, after a lost database, unknown) node with 401 and
    # Flower's SuperNode stops. zk0-supernode must stop with it: a wrapper left retrying the
    # vanished Runtime API keeps the container up and unhealthy, and Docker never restarts it.
    key = link.creds.node("removed")
    assert link.register(key).changed
    proc = link.start_node("removed", link.node_spec(key, {"node-tag": 6}))
    link.wait_ready("removed", timeout=300)
    with link.as_admin():
        assert enrollment.unregister(str(key.public_key), CONNECTION).changed
    _exit_code(proc, 120)
    assert "SuperNode terminated gracefully" in proc.output()
    assert "SuperNode exited with" in proc.output()
