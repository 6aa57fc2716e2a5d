"""zk0bot client/server settings → role variables, saved settings, secrets handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from zk0.bot import client, server, state
from zk0.bot.errors import BotError, ExitCode
from zk0.deploy import pki


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    return pki.create_ca(tmp_path / "ca").cert


def test_local_dataset_is_mounted_and_hf_passes_through(tmp_path: Path) -> None:
    assert client.dataset_vars(f"local:{tmp_path}", local_target=True) == {
        "supernode_dataset_uri": "local:/data/dataset",
        "supernode_dataset_dir": str(tmp_path),
    }
    # On a remote host the directory is not checked here (the role's container check does it).
    assert client.dataset_vars("local:/srv/elsewhere", local_target=False)["supernode_dataset_dir"] == "/srv/elsewhere"
    assert client.dataset_vars("hf:lab/so101@v1", local_target=True) == {
        "supernode_dataset_uri": "hf:lab/so101@v1",
        "supernode_dataset_dir": "",
    }


@pytest.mark.parametrize(
    ("dataset", "code"),
    [("local:relative/dir", ExitCode.USAGE), ("local:/no/such/dir", ExitCode.NOT_FOUND), ("s3://x", ExitCode.USAGE)],
)
def test_bad_datasets_say_what_to_pass(dataset: str, code: ExitCode) -> None:
    with pytest.raises(BotError) as err:
        client.dataset_vars(dataset, local_target=True)
    assert err.value.code == code and ("local:" in err.value.fix or "zk0 dataset check" in err.value.fix)


def test_client_group_vars_satisfy_the_role_and_carry_the_ca_text(tmp_path: Path, ca: Path) -> None:
    s = client.ClientSettings(
        dataset=f"local:{tmp_path}",
        superlink="link.example.org:8000",
        ca=str(ca),
        gpu=False,
        extra_vars={"supernode_wandb_mode": "online"},
    )
    gv = client.group_vars(s, tmp_path / "keys", start=False)
    assert gv["supernode_ca_cert"] == ca.read_text()
    assert gv["supernode_superlink_address"] == "link.example.org:8000"
    assert gv["supernode_start"] is False and gv["supernode_gpu"] is False
    assert gv["supernode_wandb_mode"] == "online"  # --var wins over the defaults
    assert gv["supernode_image"] == client.DEFAULT_IMAGE and not any(
        "token" in k or "key" in k.split("_")[-1:] for k in gv if k != "supernode_ca_cert"
    )
    # What the role requires (meta/argument_specs.yml required: true) is always there.
    assert {"supernode_image", "supernode_superlink_address"} <= gv.keys()


def test_client_group_vars_name_what_is_missing_or_wrong(tmp_path: Path, ca: Path) -> None:
    with pytest.raises(BotError, match="--dataset, --superlink, --ca"):
        client.group_vars(client.ClientSettings(), tmp_path, True)
    with pytest.raises(BotError, match="HOST:PORT"):
        client.group_vars(client.ClientSettings(dataset="hf:a/b", superlink="nohost", ca=str(ca)), tmp_path, True)
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("hello")
    with pytest.raises(BotError, match="not a PEM certificate"):
        client.group_vars(client.ClientSettings(dataset="hf:a/b", superlink="h:1", ca=str(not_pem)), tmp_path, True)


def test_given_options_win_over_saved_ones() -> None:
    saved = client.ClientSettings(dataset="hf:a/b", superlink="old:8000", ca="/ca.pem", image="img:1")
    merged = client.merge(saved, superlink="new:8000", image="", ca=None)
    assert (merged.dataset, merged.superlink, merged.ca, merged.image) == ("hf:a/b", "new:8000", "/ca.pem", "img:1")


def test_server_vars_list_enrolled_nodes_and_keep_the_ca_local(tmp_path: Path) -> None:
    key = pki.create_node_key(tmp_path / "n1")
    server.enroll(key.public_key, "gpu-1", base=tmp_path / "home", register=False)
    s = server.ServerSettings(sans=["link.example.org"])
    gv = server.group_vars(s, tmp_path / "home")
    assert gv["superlink_authorized_nodes"] == [
        {"name": "gpu-1", "public_key_file": str(tmp_path / "home" / "server" / "node-keys" / "gpu-1.pub")}
    ]
    assert gv["superlink_pki_local_dir"] == str(tmp_path / "home" / "server" / "pki")
    assert gv["superlink_unregister_unlisted"] is True
    # The Control API is on the proxy's admin listener: loopback by default (SSH tunnel), or its private address.
    assert s.admin_address == "127.0.0.1:8001" and gv["superlink_admin_bind_address"] == "127.0.0.1"
    assert server.ServerSettings(admin_bind="100.64.0.7", admin_port=9001).admin_address == "100.64.0.7:9001"


def test_enroll_without_a_connection_records_the_key_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    key = pki.create_node_key(tmp_path / "n1")
    first = server.enroll(key.public_key, "gpu-1", base=tmp_path)
    assert first[0].startswith("enrolled gpu-1") and "no connection 'zk0' yet" in first[1]
    assert server.enroll(key.public_key, "gpu-1", base=tmp_path)[0].endswith("already enrolled")
    with pytest.raises(BotError, match="already enrolled as 'gpu-1'"):
        server.enroll(key.public_key, "another-name", base=tmp_path)
    with pytest.raises(BotError) as err:
        server.enroll(key.private_key, "bad key", base=tmp_path)
    assert err.value.code == ExitCode.USAGE
    assert len(server.enrolled(tmp_path)) == 1


def test_secrets_file_must_be_private_and_wins_over_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "from-env")
    monkeypatch.setenv("WANDB_API_KEY", "wandb-env")
    monkeypatch.delenv("TAILSCALE_AUTH_KEY", raising=False)
    path = tmp_path / "secrets.env"
    path.write_text("# tokens\nexport HF_TOKEN='from-file'\nOTHER=ignored\n")
    path.chmod(0o644)
    with pytest.raises(BotError, match="chmod 600"):
        state.read_secrets(path)
    path.chmod(0o600)
    assert state.read_secrets(path) == {"HF_TOKEN": "from-file", "WANDB_API_KEY": "wandb-env"}
    monkeypatch.delenv("WANDB_API_KEY")
    assert state.read_secrets(None) == {"HF_TOKEN": "from-env"}


def test_state_files_are_written_private(tmp_path: Path) -> None:
    state.save_json(tmp_path / "s" / "settings.json", {"a": 1})
    assert (tmp_path / "s" / "settings.json").stat().st_mode & 0o777 == 0o600
    assert state.side_dir("server", tmp_path).stat().st_mode & 0o077 == 0
