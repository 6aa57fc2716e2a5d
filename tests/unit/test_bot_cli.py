"""The zk0bot command line through typer's CliRunner: help everywhere, keys, exit codes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zk0.bot.cli import app
from zk0.bot.errors import ExitCode
from zk0.deploy import pki

COMMANDS = [
    [],
    ["client"],
    ["client", "start"],
    ["client", "stop"],
    ["client", "status"],
    ["client", "logs"],
    ["client", "log"],
    ["server"],
    ["server", "start"],
    ["server", "stop"],
    ["server", "status"],
    ["server", "logs"],
    ["server", "log"],
    ["server", "enroll"],
    ["server", "remove"],
    ["server", "nodes"],
    ["server", "run"],
    ["server", "backup"],
    ["server", "restore"],
    ["keys"],
    ["keys", "show"],
    ["keys", "create"],
    ["doctor"],
    ["paths"],
    ["status"],
    ["config"],
    ["config", "show"],
    ["config", "set"],
]


@pytest.fixture
def runner(tmp_path: Path, monkeypatch) -> CliRunner:
    monkeypatch.setenv("ZK0BOT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "zk0bot")
def test_every_command_has_help(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: zk0bot" in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) > 2  # a description, not just the usage line


def test_keys_show_prints_the_public_key_and_its_fingerprint(runner: CliRunner, tmp_path: Path) -> None:
    key = pki.create_node_key(tmp_path / "pki")
    result = runner.invoke(app, ["keys", "show", "--pki-dir", str(tmp_path / "pki")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == key.public_key.read_text().strip()  # pipeable: stdout is the key only
    from zk0.deploy.enrollment import fingerprint, load_public_key

    assert fingerprint(load_public_key(key.public_key)) in result.stderr
    assert "PRIVATE" not in result.output


def test_keys_show_reads_the_roles_file_name(runner: CliRunner, tmp_path: Path) -> None:
    key = pki.create_node_key(tmp_path / "made")
    role_dir = tmp_path / "role-pki"
    role_dir.mkdir()
    (role_dir / "supernode.key.pub").write_bytes(key.public_key.read_bytes())
    result = runner.invoke(app, ["keys", "show", "--pki-dir", str(role_dir)])
    assert result.exit_code == 0 and result.stdout.startswith("ecdsa-sha2-nistp384 ")


def test_keys_show_without_a_key_says_how_to_make_one(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["keys", "show", "--pki-dir", str(tmp_path / "empty")])
    assert result.exit_code == ExitCode.NOT_FOUND
    assert result.stderr.startswith("error: No node key in") and "Fix: run `zk0bot keys create -K" in result.stderr
    garbage = tmp_path / "bad"
    garbage.mkdir()
    (garbage / "supernode.pub").write_text("not a key\n")
    bad = runner.invoke(app, ["keys", "show", "--pki-dir", str(garbage)])
    assert bad.exit_code == ExitCode.USAGE and "not an OpenSSH public key" in bad.stderr


def test_commands_that_need_a_start_first_say_so(runner: CliRunner) -> None:
    for command in (
        ["client", "status"],
        ["client", "stop"],
        ["client", "logs"],
        ["client", "log"],
        ["server", "status"],
        ["server", "log"],
        ["status"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == ExitCode.NOT_CONFIGURED, command
        assert "start" in result.stderr and "first" in result.stderr


def test_doctor_rejects_unknown_checks_and_half_a_superlink(runner: CliRunner) -> None:
    unknown = runner.invoke(app, ["doctor", "--check", "gpus"])
    assert unknown.exit_code == ExitCode.USAGE and "choose from docker" in unknown.stderr
    half = runner.invoke(app, ["doctor", "--check", "superlink", "--superlink", "h:1"])
    assert half.exit_code == ExitCode.USAGE and "--ca FILE" in half.stderr


def test_version_and_paths(runner: CliRunner) -> None:
    from zk0 import __version__

    assert runner.invoke(app, ["--version"]).stdout.strip() == f"zk0bot {__version__}"
    paths = runner.invoke(app, ["paths"])
    assert paths.exit_code == 0 and "playbooks: " in paths.stdout and "state: " in paths.stdout


def test_status_logs_and_stop_reach_the_host_as_the_start_did(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A saved `--var ansible_ssh_common_args=...` (how to reach the host) reaches the control
    commands' inventory too; the roles' own variables do not."""
    import json

    from zk0.bot import client, playbook
    from zk0.bot.state import save_json

    saved = client.ClientSettings(
        host="root@10.0.0.5",
        extra_vars={"ansible_ssh_common_args": "-o UserKnownHostsFile=/k", "supernode_wait_timeout": 60},
    )
    save_json(client.settings_path(tmp_path), dataclasses.asdict(saved))
    seen = {}

    def fake_run_remote(inventory: Path, argv: list[str], chdir: str, **_: object) -> dict:
        seen.update(json.loads(inventory.read_text()))
        return {"10.0.0.5": {"rc": 0, "stdout": ""}}

    monkeypatch.setattr(playbook, "run_remote", fake_run_remote)
    client.control("status", base=tmp_path)
    group_vars = seen["all"]["children"][client.GROUP]["vars"]
    assert group_vars == {"ansible_ssh_common_args": "-o UserKnownHostsFile=/k"}
