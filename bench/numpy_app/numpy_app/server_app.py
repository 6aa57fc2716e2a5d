"""ServerApp: FedAvg over one numpy array; records who answered each round and when."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Context, Message
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


class RecordingFedAvg(FedAvg):
    """FedAvg that writes per-round participation and timing to ``<output-dir>/rounds.json``."""

    def __init__(self, output_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output = Path(output_dir) / "rounds.json" if output_dir else None
        self.rounds: dict[str, Any] = {}  # round number -> figures, and the run's total
        self.t0 = time.time()

    def _save(self) -> None:
        if self.output is not None:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.output.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.rounds, indent=1))
            tmp.replace(self.output)  # readers never see a half-written file

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        ok = [m for m in replies if not m.has_error()]
        self.rounds[str(server_round)] = {
            "train-nodes": sorted(int(m.content["metrics"]["node-tag"]) for m in ok),
            "train-errors": len(replies) - len(ok),
            "train-done-s": time.time() - self.t0,
        }
        arrays, metrics = super().aggregate_train(server_round, replies)
        if arrays is not None:
            self.rounds[str(server_round)]["mean"] = float(np.mean(arrays.to_numpy_ndarrays()[0]))
        self._save()
        return arrays, metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        result = super().aggregate_evaluate(server_round, replies)
        entry = self.rounds.setdefault(str(server_round), {})
        entry["eval-done-s"] = time.time() - self.t0
        self._save()
        return result


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    min_nodes = int(cfg["min-nodes"])
    strategy = RecordingFedAvg(
        output_dir=str(cfg.get("output-dir", "")),
        fraction_train=1.0,
        fraction_evaluate=float(cfg["fraction-evaluate"]),
        min_train_nodes=min_nodes,
        min_evaluate_nodes=min_nodes,
        min_available_nodes=min_nodes,
    )
    initial = ArrayRecord([np.zeros(int(cfg["array-size"]), dtype=np.float32)])
    strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=int(cfg["num-server-rounds"]),
        timeout=float(cfg["round-timeout"]),
    )
    strategy.rounds["finished-s"] = time.time() - strategy.t0
    strategy._save()
