"""zk0bot's pure logic: targets, inventories, --var parsing, run progress. (What a playbook run
reports, from Ansible's events: tests/integration/bot/test_ansible_run.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zk0.bot import playbook, runs
from zk0.bot.errors import BotError, ExitCode

REPO = Path(__file__).resolve().parents[2]


def test_local_target_uses_the_local_connection_and_the_system_python() -> None:
    target = playbook.Target()
    assert target.local and target.name == "localhost"
    assert target.host_vars() == {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}


def test_ssh_target_splits_user_address_port_and_key(tmp_path: Path) -> None:
    key = tmp_path / "id"
    target = playbook.Target("root@10.0.0.5", ssh_port=2222, ssh_key=key)
    assert target.name == "10.0.0.5"
    assert target.host_vars() == {
        "ansible_host": "10.0.0.5",
        "ansible_user": "root",
        "ansible_port": 2222,
        "ansible_ssh_private_key_file": str(key.resolve()),
    }
    assert playbook.Target("lab-node-1").host_vars() == {"ansible_host": "lab-node-1"}


@pytest.mark.parametrize("spec", ["root@host; rm -rf /", "a b@host", "@"])
def test_bad_host_specs_are_usage_errors(spec: str) -> None:
    with pytest.raises(BotError) as err:
        playbook.Target(spec).host_vars()
    assert err.value.code == ExitCode.USAGE and "--host root@10.0.0.5" in err.value.fix


def test_vars_parse_json_values_and_reject_bad_names() -> None:
    parsed = playbook.parse_vars(["a=1", "b=true", 'c=["x"]', "d=plain text", "e=x=y"])
    assert parsed == {"a": 1, "b": True, "c": ["x"], "d": "plain text", "e": "x=y"}
    for bad in ("novalue", "1x=2", "a-b=3"):
        with pytest.raises(BotError):
            playbook.parse_vars([bad])


def test_inventory_is_private_and_has_one_host_in_the_group(tmp_path: Path) -> None:
    path = playbook.write_inventory(tmp_path / "inv.json", "zk0_clients", playbook.Target("ops@192.0.2.7"), {"k": "v"})
    assert path.stat().st_mode & 0o777 == 0o600
    data = json.loads(path.read_text())
    assert data == {
        "all": {
            "children": {
                "zk0_clients": {
                    "hosts": {"192.0.2.7": {"ansible_host": "192.0.2.7", "ansible_user": "ops"}},
                    "vars": {"k": "v"},
                }
            }
        }
    }


def test_assets_are_found_in_the_checkout_or_where_the_env_points(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ZK0BOT_ASSETS", raising=False)
    assert playbook.assets_dir() == REPO
    fake = tmp_path / "assets"
    (fake / "playbooks").mkdir(parents=True)
    (fake / "playbooks" / "client.yml").write_text("---\n")
    (fake / "roles" / "supernode").mkdir(parents=True)
    monkeypatch.setenv("ZK0BOT_ASSETS", str(fake))
    assert playbook.assets_dir() == fake


def test_run_progress_from_zk0_and_flower_log_lines() -> None:
    assert runs.progress_of("INFO zk0.server: run bot: rounds 1..3, 155 trainable tensors", 0, None) == (0, 3)
    assert runs.progress_of("INFO zk0.server: round 2 done in 41.0s: train loss 0.3", 1, 3) == (2, 3)
    assert runs.progress_of("INFO :      [ROUND 4/5]", 0, None) == (3, 5)
    assert runs.progress_of("INFO : resuming bot after round 2 from ...", 0, 3) is None
    assert runs.progress_of("Successfully started run 123", 0, None) is None


def test_missing_ansible_is_a_missing_tool_error_with_the_install_command(tmp_path: Path, monkeypatch) -> None:
    import zk0

    monkeypatch.delenv("ZK0BOT_ANSIBLE_PLAYBOOK", raising=False)
    monkeypatch.setattr(playbook.sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setattr(playbook.shutil, "which", lambda name: None)
    monkeypatch.setattr(zk0, "__file__", str(tmp_path / "src" / "zk0" / "__init__.py"))
    with pytest.raises(BotError) as err:
        playbook.ansible_playbook()
    assert err.value.code == ExitCode.MISSING_TOOL
    assert "pipx install 'zk0[operator]'" in err.value.fix and "make setup-ops" in err.value.fix
