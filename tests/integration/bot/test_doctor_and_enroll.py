"""`zk0bot doctor` and `zk0bot server enroll|nodes|remove` against a real TLS SuperLink on 127.0.0.1."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from zk0.bot.errors import ExitCode
from zk0.deploy import launch, pki
from zk0.deploy.loopback import CONNECTION, Credentials, Loopback

from .conftest import Bot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_doctor_verifies_the_superlink_certificate(loopback: Loopback, bot: Bot, tmp_path: Path) -> None:
    loopback.start_superlink()
    ca = loopback.creds.server.ca_cert
    good = bot("doctor", "--check", "superlink", "--superlink", loopback.address, "--ca", str(ca))
    assert good.returncode == ExitCode.OK, good.stdout + good.stderr
    assert good.stdout.startswith("ok") and "certificate verified" in good.stdout and "days)" in good.stdout

    # Name instead of IP: `localhost` is in the certificate's SANs too.
    by_name = bot("doctor", "--check", "superlink", "--superlink", f"localhost:{loopback.port}", "--ca", str(ca))
    assert by_name.returncode == ExitCode.OK, by_name.stdout

    other_ca = pki.create_ca(tmp_path / "other-ca").cert
    wrong = bot("doctor", "--check", "superlink", "--superlink", loopback.address, "--ca", str(other_ca))
    assert wrong.returncode == ExitCode.UNREACHABLE
    assert "not signed by" in wrong.stdout and "fix: get the federation's current ca.pem" in wrong.stdout


def test_doctor_reports_a_closed_port_and_a_missing_ca(bot: Bot, creds: Credentials, tmp_path: Path) -> None:
    closed = bot(
        "doctor",
        "--check",
        "superlink",
        "--superlink",
        f"127.0.0.1:{launch.free_port()}",
        "--ca",
        str(creds.server.ca_cert),
    )
    assert closed.returncode == ExitCode.UNREACHABLE
    assert "refused" in closed.stdout and "fix:" in closed.stdout

    missing = bot("doctor", "--check", "superlink", "--superlink", "127.0.0.1:8000", "--ca", str(tmp_path / "no.pem"))
    assert missing.returncode == ExitCode.UNREACHABLE and "does not exist" in missing.stdout


def test_full_doctor_exit_code_follows_its_required_checks(bot: Bot) -> None:
    result = bot("doctor")
    lines = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    names = [line.split()[1] for line in lines]
    assert names == ["docker", "compose", "gpu", "toolkit", "disk", "ansible", "key"]
    required_failed = any(
        line.split()[0] == "fail" and line.split()[1] in ("docker", "compose", "disk", "ansible") for line in lines
    )
    assert (result.returncode != 0) == required_failed, result.stdout
    assert all(
        "fix:" in nxt
        for line, nxt in itertools.pairwise(result.stdout.splitlines())
        if line.split()[0] in ("warn", "fail")
    )


def test_enroll_registers_once_lists_and_removes(loopback: Loopback, bot: Bot) -> None:
    loopback.start_superlink()
    bot.flwr_home = loopback.admin_home  # the admin's connection that start_superlink wrote
    key = loopback.creds.node("bot-enroll")
    fp = pki_fingerprint(key.public_key)

    first = bot("server", "enroll", str(key.public_key), "--name", "alice", "--connection", CONNECTION)
    assert first.returncode == 0, first.stderr
    assert "enrolled alice" in first.stdout and "SuperLink: registered as node" in first.stdout
    assert [n.fingerprint for n in loopback.nodes() if n.status == "registered"] == [fp]

    again = bot("server", "enroll", str(key.public_key), "--name", "alice", "--connection", CONNECTION)
    assert again.returncode == 0 and "already enrolled" in again.stdout and "already registered" in again.stdout
    assert len(loopback.nodes()) == 1

    listed = bot("server", "nodes", "--connection", CONNECTION, "--json")
    assert '"name": "alice"' in listed.stdout and '"status": "registered"' in listed.stdout

    clash = bot(
        "server",
        "enroll",
        str(loopback.creds.node("bot-other").public_key),
        "--name",
        "alice",
        "--connection",
        CONNECTION,
    )
    assert clash.returncode == ExitCode.USAGE and "enrolled with another key" in clash.stderr

    removed = bot("server", "remove", "alice", "--connection", CONNECTION)
    assert removed.returncode == 0 and "unregistered node" in removed.stdout
    assert [n.status for n in loopback.nodes()] == ["unregistered"]
    assert "alice" not in (bot.home / "server" / "nodes.json").read_text()


def test_enroll_against_a_stopped_superlink_says_so(loopback: Loopback, bot: Bot) -> None:
    loopback.start_superlink()
    bot.flwr_home = loopback.admin_home
    loopback.processes["superlink"].stop()
    key = loopback.creds.node("bot-down")
    result = bot("server", "enroll", str(key.public_key), "--name", "bob", "--connection", CONNECTION)
    assert result.returncode == ExitCode.UNREACHABLE
    assert "did not register it" in result.stderr and "Fix:" in result.stderr
    assert '"name": "bob"' in (bot.home / "server" / "nodes.json").read_text()  # kept: the next start registers it


def pki_fingerprint(path: Path) -> str:
    from zk0.deploy.enrollment import fingerprint, load_public_key

    return fingerprint(load_public_key(path))
