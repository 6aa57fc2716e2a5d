"""The pre-flight play (playbooks/preflight.yml, first in server.yml, client.yml and site.yml):
several bad inputs are reported in one failure per host, before any role runs. Check mode,
local connection: nothing on this machine changes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from zk0 import __version__
from zk0.deploy import pki

from .conftest import REPO

pytestmark = [pytest.mark.timeout(120)]
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
IMAGE = f"zk0:{__version__}"  # the tag `make image` gives this checkout's image


def _play(ansible: Path, tmp_path: Path, book: str, groups: dict) -> subprocess.CompletedProcess:
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": groups}}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        [str(ansible), "-i", str(inventory), str(REPO / "playbooks" / book), "--check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=110,
        check=False,
    )


def test_bad_client_and_server_inputs_fail_together_before_any_role(ansible: Path, tmp_path: Path) -> None:
    groups = {
        "zk0_clients": {
            "hosts": {"localhost": LOCAL},
            "vars": {
                "supernode_image": IMAGE,
                "supernode_superlink_address": "host:99999",
                "supernode_dataset_uri": "hf:owner/name@",
                "supernode_ca_cert_src": str(tmp_path / "missing-ca.pem"),
            },
        },
        "zk0_server": {
            "hosts": {"server-1": LOCAL},
            "vars": {
                "superlink_image": IMAGE,
                "superlink_cert_sans": ["https://link.example.org:8000"],
                "superlink_port": 99999,
                "superlink_pki_dir": str(tmp_path / "server-pki"),
                "superlink_admin_bind_address": "0.0.0.0",
                "superlink_pki_local_dir": str(tmp_path / "pki"),
                # No key at all is a problem; a key file not fetched yet is not (that node waits).
                "superlink_authorized_nodes": [
                    {"name": "gpu-1"},
                    {"name": "gpu-2", "public_key_file": str(tmp_path / "gpu-2.pub")},
                ],
            },
        },
    }
    result = _play(ansible, tmp_path, "server.yml", groups)
    out = result.stdout
    assert result.returncode != 0
    assert "pre-flight on server-1: 5 problem(s), nothing was changed" in out, out[-3000:]
    for says in (
        "superlink_cert_sans entry 'https://link.example.org:8000' has a scheme",
        "superlink_port 99999: port 99999 is out of range",
        "superlink_authorized_nodes[gpu-1]: give public_key",
        "set superlink_ca_create=true",
        "superlink_admin_bind_address 0.0.0.0 would publish",
    ):
        assert says in out, says
    assert "superlink_authorized_nodes[gpu-2]" not in out
    assert "PLAY [Provision the zk0 server]" not in out  # no role ran

    client = _play(ansible, tmp_path, "client.yml", groups)
    assert "pre-flight on localhost: 3 problem(s)" in client.stdout, client.stdout[-3000:]
    for says in (
        "supernode_superlink_address 'host:99999'",
        "dataset URI 'hf:owner/name@'",
        f"file '{tmp_path / 'missing-ca.pem'}' does not exist",
    ):
        assert says in client.stdout, says
    assert "PLAY [Provision zk0 client nodes]" not in client.stdout


def test_a_mistyped_ca_dir_never_mints_a_new_ca_over_an_existing_federation(ansible: Path, tmp_path: Path) -> None:
    server_pki = tmp_path / "server-pki"  # the server's federation state: its CA is installed there
    server_pki.mkdir()
    (server_pki / "ca.pem").write_bytes(pki.create_ca(tmp_path / "federation").cert.read_bytes())
    other = pki.create_ca(tmp_path / "other")
    base = {
        "superlink_image": IMAGE,
        "superlink_cert_sans": ["link.example.org"],
        "superlink_pki_dir": str(server_pki),
        "superlink_ca_create": True,
    }
    for local_dir, says in (
        (tmp_path / "typo", "holds no ca.pem and ca.key"),
        (other.cert.parent, "is not the one in superlink_pki_local_dir"),
    ):
        groups = {
            "zk0_server": {"hosts": {"server-1": LOCAL}, "vars": {**base, "superlink_pki_local_dir": str(local_dir)}}
        }
        result = _play(ansible, tmp_path, "server.yml", groups)
        assert result.returncode != 0 and says in result.stdout, result.stdout[-3000:]
        assert "PLAY [Provision the zk0 server]" not in result.stdout
    assert not (tmp_path / "typo" / "ca.key").exists()
