"""`zk0bot server run --rounds 1`: the zk0 apps on a loopback federation (TLS, node auth, two
SuperNodes on synthetic datasets, tiny SmolVLA), submitted and followed by zk0bot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zk0.bot.errors import ExitCode
from zk0.deploy.loopback import CONNECTION, Loopback

from .conftest import Bot

pytestmark = pytest.mark.slow

RUN = (
    'model="tiny" local-steps=2 batch-size=4 eval-batches=1 min-nodes=2 server-eval-datasets="synthetic:server-eval-a"'
)


@pytest.mark.timeout(600)
def test_server_run_one_round_reports_progress_and_completion(
    tmp_path: Path, loopback: Loopback, bot: Bot, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset

    loopback.env.update(
        {
            "ZK0_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "zk0-cache"),
            "WANDB_MODE": "offline",
            "HF_HUB_OFFLINE": "1",
        }
    )
    loopback.start_superlink()
    bot.flwr_home = loopback.admin_home
    for seed, name in enumerate(("a", "b"), start=1):
        data = write_synthetic_dataset(
            tmp_path / "data" / name, SyntheticDatasetConfig(episodes=4, frames_per_episode=20, seed=seed)
        )
        key = loopback.creds.node(f"bot-run-{name}")
        assert bot("server", "enroll", str(key.public_key), "--name", name, "--connection", CONNECTION).returncode == 0
        loopback.start_node(f"node-{name}", loopback.node_spec(key, {"dataset-uri": f"local:{data}"}))

    out = tmp_path / "outputs"
    result = bot(
        "server",
        "run",
        "--rounds",
        "1",
        "--connection",
        CONNECTION,
        "--run-config",
        RUN,
        "--run-config",
        f'output-dir="{out}" run-name="bot"',
        timeout=560,
    )
    assert result.returncode == ExitCode.OK, result.stdout + result.stderr + loopback.tails()
    assert "finished:completed after 1 round(s)" in result.stdout
    # Progress parsed from the ServerApp's streamed log: a line per round when not on a terminal.
    assert "rounds done: 0/1" in result.stderr and "rounds done: 1/1" in result.stderr, result.stderr
    metrics = json.loads((out / "bot" / "metrics" / "round_1.json").read_text())
    assert metrics  # the ServerApp really ran the round


def test_server_run_without_a_superlink_fails_with_the_fix(bot: Bot, tmp_path: Path) -> None:
    result = bot("server", "run", "--rounds", "1", "--connection", "nowhere", timeout=120)
    assert result.returncode == ExitCode.FAILED
    assert "did not start a run" in result.stderr and "Fix:" in result.stderr
