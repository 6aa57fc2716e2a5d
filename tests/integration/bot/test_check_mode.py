"""`zk0bot client start --check`, `server start --check`, `keys create --check`: the generated
inventories through the real playbooks, in Ansible check mode against this machine.

Check mode changes nothing (the roles' only check_mode: false tasks read /sys and run
`docker compose ps`); the test asserts that too. It never runs the playbook for real here:
that would reconfigure this machine's Docker. How far check mode gets depends on the host
(on a machine without access to download.docker.com it stops at the docker role's key
download), so the assertions are about what zk0bot controls: the inventory, the role's
argument validation passing, secrets kept out of every file, and exit code vs outcome."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from zk0 import __version__
from zk0.bot import client
from zk0.bot.errors import ExitCode
from zk0.bot.state import save_json
from zk0.deploy import pki

from .conftest import Bot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.usefixtures("ansible")]

SECRET = "hf_zk0bot-test-secret-value"
IMAGE = f"zk0:{__version__}"  # the tag `make image` gives this checkout's image


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    return pki.create_ca(tmp_path / "ca").cert


def _start(bot: Bot, dataset: Path, ca: Path, *extra: str):
    return bot(
        "client",
        "start",
        "--check",
        "--dataset",
        f"local:{dataset}",
        "--superlink",
        "link.example.org:8000",
        "--ca",
        str(ca),
        "--image",
        IMAGE,
        "--image-source",
        "local",
        *extra,
        env={"HF_TOKEN": SECRET},
    )


def test_check_mode_runs_the_client_playbook_with_the_generated_inventory(bot: Bot, tmp_path: Path, ca: Path) -> None:
    dataset = tmp_path / "my-dataset"
    dataset.mkdir()
    config_existed = Path("/etc/zk0/client").exists()
    result = _start(bot, dataset, ca)

    inventory = json.loads((bot.home / "client" / "inventory.json").read_text())
    group = inventory["all"]["children"]["zk0_clients"]
    assert group["hosts"] == {
        "localhost": {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
    }
    assert group["vars"]["supernode_dataset_dir"] == str(dataset)
    assert group["vars"]["supernode_dataset_uri"] == "local:/data/dataset"
    assert group["vars"]["supernode_ca_cert"] == ca.read_text()
    assert group["vars"]["supernode_public_key_fetch_dir"] == str(bot.home / "client" / "node-keys")

    logs = sorted((bot.home / "client" / "logs").glob("*-client-check.log"))
    assert len(logs) == 1
    log = logs[0].read_text()
    assert "--check" in log.splitlines()[0]
    validate = log.split("TASK [Check the supernode settings before any change")[1]
    assert validate.split("TASK [")[0].strip().endswith("ok: [localhost]"), validate[:800]

    recap = [line for line in log.splitlines() if line.startswith("localhost") and "failed=" in line]
    failed = int(recap[-1].split("failed=")[1].split()[0])
    assert result.returncode == (ExitCode.FAILED if failed else ExitCode.OK), result.stderr
    if failed:
        assert "failed:" in result.stderr and "Fix:" in result.stderr and str(logs[0]) in result.stderr

    # Secrets reach ansible only through a 0600 file that is gone afterwards.
    for path in (bot.home / "client").rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
    assert not list((bot.home / "client" / "logs").glob(".secrets-*"))
    assert (bot.home / "client" / "inventory.json").stat().st_mode & 0o077 == 0
    assert not (bot.home / "client" / "settings.json").exists()  # --check saves no settings
    assert Path("/etc/zk0/client").exists() == config_existed  # check mode changed nothing


def test_a_bad_role_variable_fails_before_any_change_naming_it(bot: Bot, tmp_path: Path, ca: Path) -> None:
    dataset = tmp_path / "ds"
    dataset.mkdir()
    result = _start(bot, dataset, ca, "--var", "supernode_wandb_mode=loud")
    assert result.returncode == ExitCode.FAILED
    assert "Check the supernode settings" in result.stderr and "supernode_wandb_mode" in result.stderr


def test_saved_settings_are_reused_and_status_reaches_the_node(bot: Bot, tmp_path: Path, ca: Path) -> None:
    missing = bot("client", "start", "--check")
    assert missing.returncode == ExitCode.USAGE and "--dataset, --superlink, --ca" in missing.stderr

    assert bot("client", "status").returncode == ExitCode.NOT_CONFIGURED
    dataset = tmp_path / "ds"
    dataset.mkdir()
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"HF_TOKEN={SECRET}\n")
    secrets.chmod(0o600)
    _start(bot, dataset, ca, "--secrets-file", str(secrets))
    settings = bot.home / "client" / "settings.json"
    assert not settings.exists()  # --check never saves: a dry run is not the next start's settings
    # What a real start with the same options saves (it would reconfigure this machine's Docker here).
    save_json(
        settings,
        asdict(
            client.ClientSettings(
                dataset=f"local:{dataset}",
                superlink="link.example.org:8000",
                ca=str(ca),
                image=IMAGE,
                image_source="local",
                secrets_file=str(secrets),
            )
        ),
    )
    saved = settings.read_bytes()
    again = bot("client", "start", "--check")  # everything from settings.json, the secrets file re-read
    assert settings.read_bytes() == saved
    assert "needs" not in again.stderr
    assert (
        "note: no WANDB_API_KEY (" in again.stderr and "HF_TOKEN" not in again.stderr.split("note:")[1].split("\n")[0]
    )
    assert SECRET not in (bot.home / "client" / "settings.json").read_text()
    assert len(list((bot.home / "client" / "logs").glob("*-client-check.log"))) >= 1

    # status runs `docker compose ps` on the node through ansible (here: this machine, read-only).
    status = bot("client", "status")
    if not Path("/etc/zk0/client/compose.yml").exists():
        assert status.returncode == ExitCode.FAILED
        assert "docker compose status failed on the node" in status.stderr


def test_keys_create_check_mode_validates_and_changes_nothing(bot: Bot, tmp_path: Path) -> None:
    made = pki.create_node_key(tmp_path / "pki")
    (tmp_path / "pki" / "supernode.key.pub").write_bytes(made.public_key.read_bytes())  # the role's file name
    before = made.private_key.stat()
    result = bot("keys", "create", "--check", "--pki-dir", str(tmp_path / "pki"))
    assert result.returncode == ExitCode.OK, result.stderr
    assert "node key (check mode): ok" in result.stderr
    log = next((bot.home / "client" / "logs").glob("*-node-key-check.log")).read_text()
    assert "Validating arguments against arg spec 'keys'" in log
    after = made.private_key.stat()
    assert (after.st_uid, after.st_mode, after.st_mtime) == (before.st_uid, before.st_mode, before.st_mtime)


def test_server_check_mode_lists_enrolled_nodes_and_writes_no_connection(bot: Bot, tmp_path: Path) -> None:
    key = pki.create_node_key(tmp_path / "node")
    assert bot("server", "enroll", str(key.public_key), "--name", "gpu-1").returncode == 0
    result = bot(
        "server",
        "start",
        "--check",
        "--san",
        "link.example.org",
        "--image",
        IMAGE,
        "--image-source",
        "local",
        env={"WANDB_API_KEY": SECRET},
    )

    group = json.loads((bot.home / "server" / "inventory.json").read_text())["all"]["children"]["zk0_server"]
    assert group["vars"]["superlink_authorized_nodes"] == [
        {"name": "gpu-1", "public_key_file": str(bot.home / "server" / "node-keys" / "gpu-1.pub")}
    ]
    assert group["vars"]["superlink_cert_sans"] == ["link.example.org"]
    assert group["vars"]["superlink_pki_local_dir"] == str(bot.home / "server" / "pki")
    log = next((bot.home / "server" / "logs").glob("*-server-check.log")).read_text()
    validate = log.split("TASK [Check the superlink settings before any change")[1]
    assert validate.split("TASK [")[0].strip().endswith("ok: [localhost]"), validate[:800]
    assert result.returncode in (ExitCode.OK, ExitCode.FAILED)
    assert not (bot.flwr_home / "config.toml").exists()  # the admin connection is written after a real start only
    assert not (bot.home / "server" / "pki" / "ca.key").exists()  # check mode made no CA
    for path in (bot.home / "server").rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
