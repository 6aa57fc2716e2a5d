"""Deployment runtime benchmark: zk0's tiny-SmolVLA federation vs a trivial numpy app.

Both run in one session on the same loopback federation (one TLS SuperLink with node auth,
two SuperNodes), so the ratio isolates what zk0 adds on top of Flower's own per-round floor.
Then a ClientApp-side breakdown (fresh process: imports, model build, dataset open, training,
evaluation) says where zk0's extra seconds go, and `flwr ls` gives the bytes on the wire.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NUMPY_APP = REPO / "bench" / "numpy_app"
ROUNDS = 3
TINY_RUN = {"model": "tiny", "local-steps": 3, "batch-size": 4, "eval-batches": 1, "min-nodes": 2}

PROBE = r"""
import json, sys, time, tomllib
t0 = time.perf_counter()
import zk0.client_app  # what every flwr-clientapp process imports first
t1 = time.perf_counter()
from zk0.config import FederationSettings
from zk0.node import NodeTrainer
from zk0.data.loading import open_metadata
cfg = tomllib.load(open(sys.argv[1], "rb"))["tool"]["flwr"]["app"]["config"]
cfg.update(json.loads(sys.argv[2]))
settings = FederationSettings.from_run_config(cfg)
t2 = time.perf_counter()
open_metadata(sys.argv[3])
t3 = time.perf_counter()
trainer = NodeTrainer(settings, sys.argv[3])
t4 = time.perf_counter()
arrays = {k: v for k, v in __import__("zk0.model.weights", fromlist=["x"]).get_trainable_arrays(trainer.policy).items()}
trainer.train(arrays, 1, settings.proximal_mu)
t5 = time.perf_counter()
trainer.evaluate(arrays)
t6 = time.perf_counter()
print(json.dumps({"import zk0.client_app": t1 - t0, "open dataset metadata": t3 - t2,
                  "NodeTrainer init (metadata, policy, processors)": t4 - t3,
                  "train (local-steps)": t5 - t4, "evaluate": t6 - t5}))
"""

NUMPY_PROBE = r"""
import time
t0 = time.perf_counter()
import numpy_app.client_app
print(time.perf_counter() - t0)
"""


def _numpy_round_seconds(rounds_json: Path) -> list[float]:
    data = json.loads(rounds_json.read_text())
    ends = [data[str(r)].get("eval-done-s", data[str(r)]["train-done-s"]) for r in range(1, ROUNDS + 1)]
    return [b - a for a, b in zip([0.0, *ends[:-1]], ends, strict=True)]


def _zk0_round_seconds(run_dir: Path) -> tuple[list[float], int]:
    records = [json.loads((run_dir / "metrics" / f"round_{r}.json").read_text()) for r in range(1, ROUNDS + 1)]
    return [float(r["seconds"]) for r in records], int(records[-1].get("bytes-per-client", 0))


def _per_round(info: dict) -> dict:
    return {
        "elapsed-s/round": info["elapsed"] / ROUNDS,
        "bytes/round": info["network-traffic"]["total-bytes"] / ROUNDS,
        "clientapp-s/round": info["compute-time"]["clientapp-seconds"] / ROUNDS,
    }


def _federation(base: Path):
    from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset
    from zk0.deploy.loopback import Credentials, Loopback

    datasets = [
        write_synthetic_dataset(base / f"ds{i}", SyntheticDatasetConfig(episodes=4, frames_per_episode=20, seed=i + 1))
        for i in range(2)
    ]
    env = {"ZK0_CACHE_DIR": str(base / "cache"), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    fed = Loopback(base / "fed", Credentials(base / "pki"), env=env)
    fed.start_superlink()
    for i, root in enumerate(datasets):
        key = fed.creds.node(f"bench{i}")
        fed.register(key)
        fed.start_node(f"node{i}", fed.node_spec(key, {"dataset-uri": f"local:{root}", "node-tag": i}))
    return fed, datasets


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="zk0-bench-deploy-") as tmp:
        base = Path(tmp)
        fed, datasets = _federation(base)
        try:
            t = time.monotonic()
            numpy_id = fed.submit(NUMPY_APP, {"num-server-rounds": ROUNDS, "output-dir": str(base / "np")})
            numpy_info = fed.wait_finished(numpy_id, timeout=600)
            numpy_wall = time.monotonic() - t
            out = base / "zk0-out"
            t = time.monotonic()
            zk0_id = fed.submit(
                REPO, {**TINY_RUN, "num-server-rounds": ROUNDS, "output-dir": str(out), "run-name": "b"}
            )
            zk0_info = fed.wait_finished(zk0_id, timeout=900)
            zk0_wall = time.monotonic() - t
        finally:
            fed.close()
        if numpy_info["status"] != "finished:completed" or zk0_info["status"] != "finished:completed":
            print(f"runs did not complete: numpy {numpy_info['status']}, zk0 {zk0_info['status']}")
            return
        np_rounds = _numpy_round_seconds(base / "np" / "rounds.json")
        zk_rounds, weight_bytes = _zk0_round_seconds(out / "b")
        np_mean, zk_mean = sum(np_rounds) / ROUNDS, sum(zk_rounds) / ROUNDS
        print(f"loopback federation: 1 TLS SuperLink (node auth, SQLite), 2 SuperNodes, {ROUNDS} rounds each")
        print(f"numpy app  s/round (server-timed): {' '.join(f'{s:.1f}' for s in np_rounds)}  mean {np_mean:.1f}")
        print(f"zk0 tiny   s/round (server-timed): {' '.join(f'{s:.1f}' for s in zk_rounds)}  mean {zk_mean:.1f}")
        print(f"ratio zk0/numpy per round: {zk_mean / np_mean:.2f}  (target <= 1.5)")
        print(f"whole run wall (submit -> finished seen): numpy {numpy_wall:.1f} s, zk0 {zk0_wall:.1f} s")
        for name, info in (("numpy", numpy_info), ("zk0", zk0_info)):
            print(f"flwr ls {name}: " + ", ".join(f"{k} {v:,.1f}" for k, v in _per_round(info).items()))
        if weight_bytes:
            wire = zk0_info["network-traffic"]["total-bytes"] / ROUNDS
            # Per round: 2 train sends + 2 train replies + 2 evaluate sends carry the weights.
            print(
                f"zk0 trainable weights {weight_bytes:,} B; wire/round {wire:,.0f} B "
                f"= {wire / weight_bytes:.2f} x weights (6 weight transfers expected per round)"
            )
        _breakdown(datasets[0])


def _breakdown(dataset: Path) -> None:
    """Cost of one zk0 ClientApp process vs the numpy one (each message starts a fresh process)."""
    cfg = REPO / "pyproject.toml"
    assert tomllib.loads(cfg.read_text())["tool"]["flwr"]["app"]["config"]
    zk = subprocess.run([sys.executable, "-c", PROBE, str(cfg), json.dumps(TINY_RUN), f"local:{dataset}"],
                        capture_output=True, text=True, check=False, cwd=REPO)  # fmt: skip
    npy = subprocess.run([sys.executable, "-c", NUMPY_PROBE], capture_output=True, text=True,
                         check=False, cwd=NUMPY_APP)  # fmt: skip
    if zk.returncode != 0:
        print(f"breakdown probe failed: {zk.stderr[-800:]}")
        return
    parts = json.loads(zk.stdout.strip().splitlines()[-1])
    print("zk0 ClientApp process, per message (fresh process each time):")
    for name, seconds in parts.items():
        print(f"  {name:<45} {seconds:6.2f} s")
    if npy.returncode == 0:
        print(f"  {'(numpy app: import numpy_app.client_app)':<45} {float(npy.stdout.strip()):6.2f} s")
