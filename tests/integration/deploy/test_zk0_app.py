"""The zk0 apps on the production runtime: tiny SmolVLA, synthetic datasets, TLS, node auth.

One run carries the happy path, int8-delta transfer with its residual in the node state, and
the poisoned-update rejection (two honest SuperNodes and one that sends NaN); a second test
crashes the SuperLink mid-run and resumes from the latest checkpoint."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zk0.deploy.loopback import Credentials, Loopback

from .conftest import REPO

pytestmark = pytest.mark.slow

# Small enough for 2 CPU cores; every key exists in the app's [tool.flwr.app.config].
RUN = {
    "model": "tiny",
    "local-steps": 3,
    "batch-size": 4,
    "eval-batches": 1,
    "min-nodes": 2,
    "server-eval-datasets": "synthetic:server-eval-a",
}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset

    root = tmp_path_factory.mktemp("datasets")
    return {
        name: write_synthetic_dataset(root / name, SyntheticDatasetConfig(episodes=4, frames_per_episode=20, seed=seed))
        for seed, name in enumerate(("a", "b", "c"), start=1)
    }


@pytest.fixture
def zk0_loopback(tmp_path: Path, creds: Credentials, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    cache = tmp_path_factory.getbasetemp() / "zk0-cache"  # tiny backbone built once per session
    env = {"ZK0_CACHE_DIR": str(cache), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    fed = Loopback(tmp_path, creds, env=env)
    try:
        yield fed
    finally:
        fed.close()


def _start_nodes(
    fed: Loopback, datasets: dict[str, Path], poisoned: str | None = None, cold: str | None = None
) -> None:
    """Nodes run zk0-supernode (warm ClientApp pool), except ``cold``: Flower's flower-supernode."""
    fed.start_superlink()
    for name, root in datasets.items():
        key = fed.creds.node(f"zk0-{name}")
        fed.register(key)
        config: dict = {"dataset-uri": f"local:{root}"}
        if name == poisoned:
            config["fault-injection"] = "nan"
        fed.start_node(f"node-{name}", fed.node_spec(key, config, warm_clientapps=name != cold))


def _metrics(run_dir: Path, r: int) -> dict:
    return json.loads((run_dir / "metrics" / f"round_{r}.json").read_text())


@pytest.mark.timeout(600)
def test_two_rounds_with_checkpoints_and_a_poisoned_node_dropped(
    zk0_loopback: Loopback, datasets: dict[str, Path], tmp_path: Path
) -> None:
    fed = zk0_loopback
    _start_nodes(fed, datasets, poisoned="c", cold="b")
    out = tmp_path / "outputs"
    # client-eval-every=2: round 1 sends train messages only, round 2 evaluate messages too.
    # int8-delta: the nodes keep what rounding lost in their Flower node state between rounds
    # (bf16, the default, travels in every other deployment test).
    config = {
        **RUN,
        "num-server-rounds": 2,
        "output-dir": str(out),
        "run-name": "deploy",
        "client-eval-every": 2,
        "transfer": "int8-delta",
    }
    run_id = fed.submit(REPO, config)
    info = fed.wait_finished(run_id, timeout=540)
    assert info["status"] == "finished:completed", fed.tails()
    assert info["network-traffic"]["total-bytes"] > 0

    run_dir = out / "deploy"
    for r in (0, 1, 2):
        assert (run_dir / "checkpoints" / f"round_{r}" / "model.safetensors").is_file(), r
    assert "server-eval" in _metrics(run_dir, 0)
    for r in (1, 2):
        train = _metrics(run_dir, r)["train"]
        assert len(train["clients"]) == 2, train  # the two honest nodes were aggregated ...
        assert len(train["rejected"]) == 1, train  # ... the NaN update was dropped
        # Keyed by the node id the SuperLink gives each node; the anonymous label travels as data.
        entries = [*train["clients"].values(), *train["rejected"].values()]
        assert all(e["dataset-label"].startswith("ds-") for e in entries), entries
        assert "server-eval" in _metrics(run_dir, r)
        # Each honest train reply scored the weights it received; the poisoned one was dropped whole.
        assert set(_metrics(run_dir, r)["client-eval-start"]["clients"]) == set(train["clients"])
        assert _metrics(run_dir, r)["transfer"] == "int8-delta"
    assert "client-eval" not in _metrics(run_dir, 1)
    assert len(_metrics(run_dir, 2)["client-eval"]["clients"]) == 3  # evaluate messages reach every node

    # Node a forked every message (2 train, 1 evaluate) from its warm pool; node b, on
    # Flower's own subprocess isolation, trained alongside it in the same rounds.
    warm, cold = fed.processes["node-a"].output(), fed.processes["node-b"].output()
    assert "ClientApp pool warm" in warm and warm.count("forked from the warm pool") == 3, warm[-3000:]
    assert "ClientApp pool" not in cold and "Start `flwr-clientapp` process" in cold, cold[-3000:]
    # Round 2's update carried round 1's residual, on both kinds of node: the node state
    # survived between the messages of the run (once per node: round 1 has none to carry).
    for out_text in (warm, cold):
        assert out_text.count("adding the residual carried from the previous round") == 1, out_text[-3000:]


@pytest.mark.timeout(600)
def test_superlink_crash_then_resume_from_latest_checkpoint(
    zk0_loopback: Loopback, datasets: dict[str, Path], tmp_path: Path
) -> None:
    fed = zk0_loopback
    _start_nodes(fed, {k: v for k, v in datasets.items() if k != "c"})
    out = tmp_path / "outputs"
    run_dir = out / "resume"
    config = {**RUN, "num-server-rounds": 2, "output-dir": str(out), "run-name": "resume"}
    first = fed.submit(REPO, config)
    deadline = time.monotonic() + 420
    while not (run_dir / "metrics" / "round_1.json").is_file():
        assert time.monotonic() < deadline, fed.tails()
        assert fed.processes["superlink"].alive(), fed.tails()
        time.sleep(0.5)
    round1 = _metrics(run_dir, 1)
    fed.processes["superlink"].crash()  # SIGKILL: the ServerApp dies with it
    fed.start_superlink()  # same database, same port

    # History and enrollment survived the restart.
    assert fed.run_info(first)["run-id"] == str(first)
    assert all(not fed.register(fed.creds.node(f"zk0-{n}")).changed for n in ("a", "b"))
    # The same SuperNode processes reconnect; resume continues after the latest checkpoint.
    second = fed.submit(REPO, {**config, "resume": True})
    info = fed.wait_finished(second, timeout=480)
    assert info["status"] == "finished:completed", fed.tails()
    assert _metrics(run_dir, 1) == round1, "a completed round was redone"
    assert len(_metrics(run_dir, 2)["train"]["clients"]) == 2  # round 2 trained after the resume
    assert (run_dir / "checkpoints" / "round_2" / "model.safetensors").is_file()
