"""zk0bot refuses bad addresses, ports, SANs, dataset URIs and --var names with exit 2 and a
message naming the value; --check never writes settings.json. Through the CLI (CliRunner),
with ansible-playbook replaced by a stub where a run would start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zk0.bot import playbook
from zk0.bot.cli import app
from zk0.bot.errors import ExitCode
from zk0.deploy import pki


@pytest.fixture
def runner(tmp_path: Path, monkeypatch) -> CliRunner:
    monkeypatch.setenv("ZK0BOT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    monkeypatch.setenv("COLUMNS", "400")
    for name in ("HF_TOKEN", "WANDB_API_KEY", "TAILSCALE_AUTH_KEY"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


@pytest.fixture
def runs(monkeypatch, tmp_path: Path) -> list[dict]:
    """ansible-playbook stubbed: records each run and succeeds."""
    calls: list[dict] = []

    def fake(book, inventory, log_dir, secrets=None, check=False, *args, **kwargs):
        calls.append({"book": book, "check": check, "inventory": json.loads(Path(inventory).read_text())})
        return playbook.PlaybookResult(rc=0, log=tmp_path / "fake.log")

    monkeypatch.setattr(playbook, "run_playbook", fake)
    return calls


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    return pki.create_ca(tmp_path / "ca").cert


def _client(
    runner: CliRunner, ca: Path, *extra: str, superlink: str = "link.example.org:8000", dataset: str = "hf:owner/name"
):
    return runner.invoke(
        app, ["client", "start", "--superlink", superlink, "--dataset", dataset, "--ca", str(ca), *extra]
    )


@pytest.mark.parametrize(
    ("superlink", "says"),
    [
        ("host:99999", "port '99999' is not 1-65535"),
        ("host:0", "port '0' is not 1-65535"),
        ("https://host", "has a scheme (https://)"),
        ("host", "has no port"),
    ],
)
def test_client_start_refuses_a_bad_superlink(runner, runs, ca, superlink: str, says: str) -> None:
    result = _client(runner, ca, superlink=superlink)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"error: --superlink {superlink!r}" in result.stderr and says in result.stderr
    assert "link.example.org:8000" in result.stderr and not runs


@pytest.mark.parametrize("dataset", ["hf:owner/name@", "hf:/x", "local:relative/dir", "s3:bucket/x"])
def test_client_start_refuses_a_bad_dataset_uri_with_zk0s_parser(runner, runs, ca, dataset: str) -> None:
    result = _client(runner, ca, dataset=dataset)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"--dataset: dataset URI {dataset!r}" in result.stderr and "hf:owner/name" in result.stderr and not runs


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "-5"], "--port -5: port -5 is out of range"),
        (["--port", "70000"], "port 70000 is out of range"),
        (["--san", "https://link.example.org:8000"], "has a scheme"),
        (["--san", "link.example.org:8000"], "has a port"),
        (["--san", "ok.example.org", "--address", "ok.example.org:99999"], "--address 'ok.example.org:99999'"),
    ],
)
def test_server_start_refuses_bad_ports_sans_and_addresses(runner, runs, args: list[str], says: str) -> None:
    result = runner.invoke(app, ["server", "start", "--check", *args])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert says in result.stderr and "e.g." in result.stderr and not runs


def test_server_start_warns_about_loopback_only_sans(runner, runs) -> None:
    result = runner.invoke(app, ["server", "start", "--check"])
    assert result.exit_code == 0, result.output
    assert "only loopback names" in result.stderr and "--san link.example.org" in result.stderr
    assert runs[0]["inventory"]["all"]["children"]["zk0_server"]["vars"]["superlink_ca_create"] is True


def test_doctor_refuses_an_out_of_range_port_before_any_check(runner, ca) -> None:
    result = runner.invoke(app, ["doctor", "--superlink", "host:99999", "--ca", str(ca)])
    assert result.exit_code == ExitCode.USAGE and "port '99999' is not 1-65535" in result.stderr
    assert result.stdout == ""  # no check ran (before: it tested port 34463)


def test_check_mode_never_writes_the_saved_settings(runner, runs, ca, tmp_path: Path) -> None:
    settings = tmp_path / "home" / "client" / "settings.json"
    assert _client(runner, ca, "--check").exit_code == 0
    assert runs[-1]["check"] is True and not settings.exists()

    assert _client(runner, ca).exit_code == 0  # a real start saves
    saved = settings.read_bytes()
    dry = _client(runner, ca, "--check", superlink="other.example.org:9000", dataset="hf:owner/other")
    assert dry.exit_code == 0 and settings.read_bytes() == saved
    assert runs[-1]["inventory"]["all"]["children"]["zk0_clients"]["vars"]["supernode_superlink_address"] == (
        "other.example.org:9000"
    )
    server_settings = tmp_path / "home" / "server" / "settings.json"
    assert runner.invoke(app, ["server", "start", "--check", "--san", "link.example.org"]).exit_code == 0
    assert not server_settings.exists()


def test_unknown_var_names_are_refused_with_the_known_ones(runner, runs, ca) -> None:
    result = _client(runner, ca, "--var", "supernode_wandbmode=online")
    assert result.exit_code == ExitCode.USAGE and not runs
    roles = "roles docker, monitoring, nvidia, supernode, tailscale"
    assert f"--var supernode_wandbmode is not a variable of client.yml ({roles})" in result.stderr
    assert "supernode_wandb_mode" in result.stderr and "docker_install_source" in result.stderr
    assert "zk0_monitoring" in result.stderr and "monitoring_node_exporter_listen_address" in result.stderr
    assert "supernode_hf_token" not in result.stderr  # secrets are not offered
    server = runner.invoke(app, ["server", "start", "--check", "--var", "supernode_gpu=true"])
    assert server.exit_code == ExitCode.USAGE and "not a variable of server.yml" in server.stderr
    ok = runner.invoke(
        app,
        [
            "server",
            "start",
            "--check",
            "--san",
            "l.example.org",
            "--var",
            "zk0_server_nvidia=true",
            "--var",
            "superlink_wandb_mode=online",
            "--var",
            "ansible_port=2222",
        ],
    )
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    "name",
    [
        "supernode_hf_token",
        "supernode_wandb_api_key",
        "tailscale_auth_key",
        "ansible_become_password",
        "my_secret_thing",
    ],
)
def test_secret_var_names_are_refused(runner, runs, ca, tmp_path: Path, name: str) -> None:
    result = _client(runner, ca, "--var", f"{name}=s3cr3t-value")
    assert result.exit_code == ExitCode.USAGE and not runs
    assert f"--var {name} holds a secret" in result.stderr and "--secrets-file" in result.stderr
    assert not any("s3cr3t-value" in p.read_text() for p in (tmp_path / "home").rglob("*") if p.is_file())


def test_saved_unknown_or_secret_vars_are_dropped_with_a_note(runner, runs, ca, tmp_path: Path) -> None:
    assert _client(runner, ca, "--var", "supernode_wandb_mode=online").exit_code == 0
    settings = tmp_path / "home" / "client" / "settings.json"
    data = json.loads(settings.read_text())
    data["extra_vars"].update(old_name=1, supernode_hf_token="leaked")  # written by an older zk0bot
    settings.write_text(json.dumps(data))
    result = runner.invoke(app, ["client", "start"])
    assert result.exit_code == 0, result.output
    assert "dropped the saved --var old_name, supernode_hf_token" in result.stderr
    assert json.loads(settings.read_text())["extra_vars"] == {"supernode_wandb_mode": "online"}
