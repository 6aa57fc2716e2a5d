"""A federated run across two SuperNodes on the production runtime: TLS, node auth, database."""

from __future__ import annotations

import json

import pytest

from zk0.deploy.loopback import Loopback

from .conftest import NUMPY_APP


@pytest.mark.timeout(240)
def test_two_rounds_two_nodes_tls_auth(loopback: Loopback, tmp_path) -> None:
    loopback.start_superlink()
    keys = [loopback.creds.node(f"node{i}") for i in range(2)]
    for key in keys:
        assert loopback.register(key).changed
    # Enrollment is idempotent: a second registration is a no-op that says so.
    again = loopback.register(keys[0])
    assert not again.changed and "already registered" in again.message

    for i, key in enumerate(keys):
        loopback.start_node(f"node{i}", loopback.node_spec(key, {"node-tag": i}))

    out = tmp_path / "out"
    run_id = loopback.submit(NUMPY_APP, {"output-dir": str(out)})
    info = loopback.wait_finished(run_id, timeout=180)
    assert info["status"] == "finished:completed", loopback.tails()
    assert info["network-traffic"]["total-bytes"] > 0

    rounds = json.loads((out / "rounds.json").read_text())
    assert rounds["1"]["train-nodes"] == [0, 1] and rounds["2"]["train-nodes"] == [0, 1]
    assert rounds["2"]["mean"] == pytest.approx(2.0)
    # Both SuperNodes authenticated and stayed up.
    assert all(loopback.processes[f"node{i}"].alive() for i in range(2))
