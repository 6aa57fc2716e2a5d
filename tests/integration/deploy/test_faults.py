"""Faults users meet on the deployment runtime: a SuperNode dies mid-round, the SuperLink is
down for a while. (The SuperLink crash mid-run, with resume from the latest checkpoint, is in
test_zk0_app.py: it needs the zk0 app's checkpoints.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from zk0.deploy.loopback import Loopback

from .conftest import NUMPY_APP


def _rounds(out: Path) -> dict:
    path = out / "rounds.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _wait(predicate, timeout: float, what: str, fed: Loopback) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{fed.tails()}")


@pytest.mark.timeout(600)  # generous: CI runs this tier beside the image build and the lab push
def test_supernode_killed_mid_round_then_rejoins(loopback: Loopback, tmp_path: Path) -> None:
    loopback.start_superlink()
    specs = {}
    for i in range(3):
        key = loopback.creds.node(f"node{i}")
        loopback.register(key)
        specs[i] = loopback.node_spec(key, {"node-tag": i})
        loopback.start_node(f"node{i}", specs[i])
    for i in range(3):  # all connected, pools warm: round 1 is not waiting on start-up
        loopback.wait_ready(f"node{i}")
    out = tmp_path / "out"
    run_id = loopback.submit(
        NUMPY_APP,
        {
            "output-dir": str(out),
            "num-server-rounds": 4,
            # Every round samples all three: once node 2's old session has expired, a round waits
            # for it to come back instead of finishing with the other two before it is in.
            "min-nodes": 3,
            "train-seconds": 6.0,
            "fraction-evaluate": 0.0,
            "round-timeout": 40.0,  # the dead node's reply is waited for at most this long
        },
    )
    victim = loopback.processes["node2"]
    # Kill node 2 (SuperNode and its ClientApp) while it trains in round 1.
    started = ("forked from the warm pool", "Start `flwr-clientapp` process")  # zk0-/flower-supernode
    _wait(lambda: any(t in victim.output() for t in started), 120, "node2 training", loopback)
    victim.kill()
    _wait(lambda: "1" in _rounds(out), 120, "round 1 to finish", loopback)
    assert _rounds(out)["1"]["train-nodes"] == [0, 1]  # the round completed with the others
    # Restart it with the same key, as a supervisor (systemd, Docker restart policy) would:
    # until the SuperLink sees the old session expire (heartbeat, up to ~60 s) it refuses to
    # activate the key again and the SuperNode exits 305; the next restart gets in.
    for attempt in range(12):
        node = loopback.start_node(f"node2-restart{attempt}", specs[2])
        _wait(lambda n=node: "SuperNode ID" in n.output() or not n.alive(), 90, "node2 restart", loopback)
        if "SuperNode ID" in node.output():
            break
        assert "Failed to activate SuperNode" in node.output(), node.output()
        time.sleep(5)
    else:
        pytest.fail(f"node2 never got back in\n{loopback.tails()}")
    info = loopback.wait_finished(run_id, timeout=420)
    assert info["status"] == "finished:completed", loopback.tails()
    rounds = _rounds(out)
    later = [rounds[str(r)]["train-nodes"] for r in range(2, 5)]
    assert any(2 in nodes for nodes in later), (rounds, loopback.tails(4000))  # it rejoined a later round
    assert all({0, 1} <= set(nodes) for nodes in later), rounds


@pytest.mark.timeout(480)
def test_supernode_retries_while_superlink_is_down(loopback: Loopback, tmp_path: Path) -> None:
    keys = [loopback.creds.node(f"node{i}") for i in range(2)]
    loopback.start_superlink()
    for key in keys:
        loopback.register(key)
    loopback.processes["superlink"].stop()  # the SuperLink is down ...
    # Bounded: a SuperNode told to wait at most 4 s gives up cleanly.
    quitter = loopback.start_node("quitter", loopback.node_spec(keys[0], {}, max_wait_time=4.0))
    assert quitter.popen.wait(timeout=60) != 0
    assert "Giving up reconnection" in quitter.output()
    # Patient: SuperNodes started while it is down retry with backoff and join when it is back.
    for i, key in enumerate(keys):
        loopback.start_node(f"node{i}", loopback.node_spec(key, {"node-tag": i}, max_wait_time=120.0))
    early = loopback.processes["node0"]
    assert early.wait_for_output("retrying in", 60), early.output()
    time.sleep(3)
    assert early.alive(), early.output()
    loopback.start_superlink()  # ... and back, with its database: the keys are still registered
    out = tmp_path / "out"
    run_id = loopback.submit(NUMPY_APP, {"output-dir": str(out), "num-server-rounds": 1, "fraction-evaluate": 0.0})
    info = loopback.wait_finished(run_id, timeout=300)
    assert info["status"] == "finished:completed", loopback.tails()
    assert _rounds(out)["1"]["train-nodes"] == [0, 1]
