"""A real Flower simulation (`flwr run . local-sim`) of the zk0 apps: tiny SmolVLA, two
virtual SuperNodes on their own synthetic datasets, then a resumed run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zk0.deploy.launch import free_port
from zk0.simulation import configure_simulation, start_sim_superlink, stop_sim_superlink, write_sim_connection

REPO = Path(__file__).resolve().parents[2]
FLWR = str(Path(sys.executable).parent / "flwr")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    """A simulation SuperLink of our own (private FLWR_HOME and ports), always stopped."""
    home = tmp_path_factory.mktemp("flwr-home")
    cache = tmp_path_factory.mktemp("zk0-cache")
    port = free_port()
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(port),
        "ZK0_CACHE_DIR": str(cache),
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    saved = dict(os.environ)
    os.environ.update(env)  # the SuperLink passes its environment on to the apps
    try:
        write_sim_connection("local-sim", home=home)
        start_sim_superlink(home, port)
        configure_simulation("local-sim", num_supernodes=2, cpus_per_node=1, gpus_per_node=0, home=home)
        yield env
    finally:
        stop_sim_superlink(home)
        os.environ.clear()
        os.environ.update(saved)


def flwr_run(env: dict, run_config: str) -> str:
    result = subprocess.run(
        [FLWR, "run", str(REPO), "local-sim", "--stream", "--run-config", run_config],
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        cwd=REPO,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def trainable(checkpoint: Path) -> dict[str, np.ndarray]:
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    from zk0.model.weights import get_trainable_arrays

    return get_trainable_arrays(SmolVLAPolicy.from_pretrained(str(checkpoint)))


def test_two_rounds_then_resume(simulation, tmp_path):
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    out = tmp_path / "outputs"
    # client-eval-every=1: the separate evaluate messages too, not only the train replies' scores.
    # Each virtual node its own generated dataset, named in sim-datasets (seeded: the same data
    # on every run, so the loss figures below are reproducible).
    datasets = "synthetic:node-a?seed=1000,synthetic:node-b?seed=1001"
    common = (
        f"output-dir='{out}' run-name='sim' local-steps=12 batch-size=4 eval-batches=2 client-eval-every=1 "
        f"sim-datasets='{datasets}'"
    )
    output = flwr_run(simulation, f"num-server-rounds=2 {common}")
    run_dir = out / "sim"
    # `flwr run` exits 0 even when the simulation itself failed: its output says why.
    assert (run_dir / "checkpoints" / "round_2").is_dir(), output[-6000:]

    # A checkpoint per round that lerobot loads back, and training moved the weights.
    checkpoints = {r: run_dir / "checkpoints" / f"round_{r}" for r in (0, 1, 2)}
    weights = {r: trainable(path) for r, path in checkpoints.items()}
    for r in (1, 2):
        assert any(not np.array_equal(weights[r][n], weights[0][n]) for n in weights[0]), f"round {r} == round 0"
    config = SmolVLAConfig.from_pretrained(str(checkpoints[2]))
    pre, post = make_pre_post_processors(config, pretrained_path=str(checkpoints[2]))
    assert pre is not None and post is not None

    # Per-round JSON: server eval for rounds 0..2, two clients trained and evaluated.
    rounds = {r: json.loads((run_dir / "metrics" / f"round_{r}.json").read_text()) for r in (0, 1, 2)}
    for r, record in rounds.items():
        assert np.isfinite(record["server-eval"]["mean"]), r
        assert set(record["server-eval"]) == {"synthetic:server-eval-a", "synthetic:server-eval-b", "mean"}
    for r in (1, 2):
        clients = rounds[r]["train"]["clients"]
        assert len(clients) == 2 and all(c["dataset-label"].startswith("ds-") for c in clients.values())
        assert len(rounds[r]["client-eval"]["clients"]) == 2
        assert set(rounds[r]["client-eval-start"]["clients"]) == set(clients)
        assert np.isfinite(rounds[r]["client-eval-start-loss"]), r
    # Round 2's train replies scored what round 1's evaluate messages scored: round 1's result.
    assert rounds[2]["client-eval-start-loss"] == pytest.approx(rounds[1]["client-eval-loss"], rel=1e-4)
    # Training lowers the loss: the nodes' first steps of round 1 against their last of round 2
    # (24 steps apart; within one round of 12 steps a single batch's noise can hide it).
    start = np.mean([c["train-loss-start"] for c in rounds[1]["train"]["clients"].values()])
    end = np.mean([c["train-loss-end"] for c in rounds[2]["train"]["clients"].values()])
    assert end < start, (start, end)

    # wandb wrote an offline run next to the checkpoints.
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert offline and any(offline[0].rglob("*.wandb"))

    # The run's charts, redrawn each round: rounds.png and, at each server evaluation, one action
    # chart per eval dataset (recorded vs predicted joints), PNGs of the charts' own size.
    from PIL import Image

    from zk0.federation.plots import SIZE

    charts = sorted((run_dir / "plots").glob("*.png"))
    assert (run_dir / "plots" / "rounds.png") in charts, charts
    assert len([c for c in charts if c.name.startswith("actions-") and c.name.endswith("-round_2.png")]) == 2, charts
    for chart in charts:
        with Image.open(chart) as image:
            assert image.format == "PNG" and image.size == SIZE and chart.stat().st_size > 5_000, chart

    # Resume: same run name, one more round; starts at round 3 from round 2's weights.
    resumed = flwr_run(simulation, f"num-server-rounds=3 resume=true {common}")
    round3 = json.loads((run_dir / "metrics" / "round_3.json").read_text())
    assert round3["train"]["clients"], round3
    assert (run_dir / "checkpoints" / "round_3" / "model.safetensors").is_file()
    assert json.loads((run_dir / "metrics" / "round_0.json").read_text()) == rounds[0], "round 0 re-ran on resume"
    assert "resuming sim after round 2" in resumed
