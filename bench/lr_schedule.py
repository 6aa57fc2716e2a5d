"""Learning-rate schedule (`lr-schedule`, `plateau-patience`): a tiny in-process federation with
a constant rate, with the cosine schedule over all rounds' steps and with the server's
reduce-on-plateau, same seeds otherwise, and the server-eval loss each gives; the rates the
nodes report per round show they agree."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .inprocess import run_config, run_federation
from .transfer import _nodes_built_once

ROUNDS, NODES = 10, 2
FEDERATION: dict[str, Any] = {  # the tiny federation: pyproject defaults otherwise
    "num-server-rounds": ROUNDS,
    "local-steps": 10,
    "batch-size": 4,
    "checkpoint-every": 0,
    "server-eval-every": 1,
    "device": "cpu",
    "wandb-project": "",
}
RUNS: dict[str, dict[str, Any]] = {
    "constant": {"lr-schedule": "constant"},
    "cosine": {"lr-schedule": "cosine", "lr-warmup-steps": 5},  # half a round; floor: pyproject's
    # Constant, but the server halves lr (and doubles mu) after an evaluation without a new best.
    "plateau": {"lr-schedule": "constant", "plateau-patience": 1},
}


def _round(metrics: Path, r: int) -> dict[str, Any]:
    return json.loads((metrics / f"round_{r}.json").read_text())


def federate(workdir: Path, name: str, overrides: dict[str, Any]) -> tuple[list[float], list[list[float]], float]:
    """(server-eval loss per round from 0, the learning rates the nodes report per round, seconds)."""
    from zk0.federation import protocol as wire

    config = run_config(**FEDERATION, **overrides, **{"output-dir": str(workdir / "runs"), "run-name": name})
    started = time.perf_counter()
    with _nodes_built_once():
        run_federation(config, nodes=NODES)
    seconds = time.perf_counter() - started
    metrics = workdir / "runs" / name / "metrics"
    losses = [_round(metrics, r)["server-eval"]["mean"] for r in range(ROUNDS + 1)]
    rates = [
        [client[wire.LEARNING_RATE] for client in _round(metrics, r)["train"]["clients"].values()]
        for r in range(1, ROUNDS + 1)
    ]
    return losses, rates, seconds


def run() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    with tempfile.TemporaryDirectory(prefix="zk0-bench-lr-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("ZK0_CACHE_DIR", str(workdir / "cache"))
        results = {name: federate(workdir, name, overrides) for name, overrides in RUNS.items()}
    steps = FEDERATION["local-steps"]
    print(f"\n## Tiny federation, {ROUNDS} rounds x {steps} local steps, {NODES} nodes, same seeds")
    print(f"{'round':<7}" + "".join(f"{name + ' loss':>16}{name + ' lr':>14}" for name in results))
    for r in range(ROUNDS + 1):
        cells = []
        for losses, rates, _ in results.values():
            lr = f"{rates[r - 1][0]:.2e}" if r else "-"
            agree = "" if not r or len(set(rates[r - 1])) == 1 else "!"  # nodes disagreeing: a bug
            cells.append(f"{losses[r]:>16.4f}{lr + agree:>14}")
        print(f"{r:<7}" + "".join(cells))
    base = results["constant"][0][-1]
    for name, (losses, _, seconds) in results.items():
        diff = (losses[-1] - base) / base * 100
        verdict = "" if name == "constant" else f"  ({'no worse' if losses[-1] <= base else 'WORSE'} than constant)"
        print(
            f"final server-eval loss {name:<9}{losses[-1]:.4f}  {diff:+.2f} % vs constant{verdict}   ({seconds:.0f}s)"
        )
