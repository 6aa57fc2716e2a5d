"""A key unregistered on the SuperLink is burned for good (Flower 1.42 keeps it reserved):
the superlink role's enrollment script and ``enrollment.register`` report it with the fix
instead of crashing, and the other keys of the same batch are still registered.

Runs the role's script (roles/superlink/files/enroll_nodes.py) as the role does, with
``python -c`` and the request on stdin, against a real loopback SuperLink. No training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zk0.deploy import enrollment
from zk0.deploy.loopback import CONNECTION, Loopback

pytestmark = pytest.mark.timeout(180)

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "superlink" / "files" / "enroll_nodes.py"
FINDING = "was unregistered on this SuperLink and can never be registered again"


def _enroll(link: Loopback, nodes: list[dict[str, str]]) -> dict:
    # As in the role: straight to the SuperLink's own port on 127.0.0.1 (no edge proxy in between).
    direct = f"127.0.0.1:{getattr(link, 'superlink_port', link.port)}"
    request = {
        "nodes": nodes,
        "unregister_unlisted": True,
        "address": direct,
        "ca": str(link.creds.server.ca_cert),
        "timeout": 30,
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.read_text(encoding="utf-8")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FLWR_TELEMETRY_ENABLED": "0"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_burned_key_is_a_finding_and_the_batch_goes_on(loopback: Loopback, monkeypatch: pytest.MonkeyPatch) -> None:
    loopback.start_superlink()
    burned, fresh = loopback.creds.node("burned-node"), loopback.creds.node("fresh-node")
    assert loopback.register(burned).changed
    with loopback.as_admin():
        assert enrollment.unregister(str(burned.public_key), CONNECTION).changed
        # zk0 node register / zk0bot server enroll: a typed error with the same finding.
        with pytest.raises(enrollment.KeyBurnedError) as err:
            enrollment.register(burned.public_key, CONNECTION, name="burned-node")
    assert "key of burned-node (SHA256:" in str(err.value) and FINDING in str(err.value)
    assert err.value.node_id and "new key pair" in str(err.value)
    # Flower's own refusal ("Public key already in use", HTTP 412) maps to the same finding.
    with loopback.as_admin(), monkeypatch.context() as m:
        m.setattr(enrollment, "find_node", lambda *_: None)
        with pytest.raises(enrollment.KeyBurnedError, match=FINDING) as raw:
            enrollment.register(burned.public_key, CONNECTION, name="burned-node")
    assert raw.value.node_id is None and enrollment.ALREADY_IN_USE in str(raw.value.__cause__)  # the reason, kept

    batch = [
        {"name": "burned-node", "public_key": burned.public_key.read_text()},
        {"name": "fresh-node", "public_key": fresh.public_key.read_text()},
    ]
    result = _enroll(loopback, batch)
    assert [r["name"] for r in result["registered"]] == ["fresh-node"] and result["changed"]
    assert result["failed"] == []
    [finding] = result["burned"]
    assert finding["name"] == "burned-node" and finding["node_id"] == str(err.value.node_id)
    message = finding["message"]
    assert message.startswith("key of burned-node (SHA256:") and FINDING in message
    for fix in (
        "make a new key pair",
        "supernode.key",
        "`zk0bot keys create`",
        "playbooks/client.yml",
        "send the new public key",
        "superlink_authorized_nodes",
        "`zk0bot server remove burned-node`",
    ):
        assert fix in message, message
    status = {n["name"]: n["status"] for n in result["nodes"]}
    assert status == {"burned-node": enrollment.UNREGISTERED, "fresh-node": "registered"}, result["nodes"]

    # Idempotent: the fresh key stays registered, the burned one is reported again, nothing changes.
    again = _enroll(loopback, batch)
    assert not again["changed"] and again["registered"] == [] and len(again["burned"]) == 1
