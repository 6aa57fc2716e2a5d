"""Typed views of Flower's run config (pyproject `[tool.flwr.app.config]`, `--run-config`)
and node config. Every knob lives there; nothing is hard-coded in the apps."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from zk0.model.factory import ModelConfig, default_cache_dir
from zk0.training.local import TrainConfig


class ConfigError(ValueError):
    """A missing or ill-typed config value; the message names the key and the fix."""


def _get(config: dict[str, Any], key: str, kind: type, default: Any = ...) -> Any:
    if key not in config:
        if default is ...:
            raise ConfigError(f"run config lacks '{key}': set it in [tool.flwr.app.config] or --run-config")
        return default
    value = config[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind):
        raise ConfigError(f"run config '{key}' = {value!r} should be {kind.__name__}")
    return value


@dataclass(frozen=True)
class FederationSettings:
    """What one federated run does, shared by the ServerApp and the ClientApp."""

    num_server_rounds: int
    fraction_train: float
    fraction_evaluate: float
    min_nodes: int
    local_steps: int
    batch_size: int
    num_workers: int
    lr: float
    proximal_mu: float
    model: str
    seed: int
    device: str
    eval_fraction: float
    eval_batches: int
    server_eval_every: int
    server_eval_datasets: tuple[str, ...]
    checkpoint_every: int
    output_dir: str
    run_name: str
    resume: bool
    max_update_norm: float
    round_timeout: float
    wandb_project: str
    hub_repo_id: str
    hub_private: bool

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> FederationSettings:
        datasets = _get(run_config, "server-eval-datasets", str, "")
        settings = cls(
            num_server_rounds=_get(run_config, "num-server-rounds", int),
            fraction_train=_get(run_config, "fraction-train", float, 1.0),
            fraction_evaluate=_get(run_config, "fraction-evaluate", float, 1.0),
            min_nodes=_get(run_config, "min-nodes", int, 2),
            local_steps=_get(run_config, "local-steps", int),
            batch_size=_get(run_config, "batch-size", int, 4),
            num_workers=_get(run_config, "num-workers", int, 0),
            lr=_get(run_config, "lr", float),
            proximal_mu=_get(run_config, "proximal-mu", float, 0.0),
            model=_get(run_config, "model", str),
            seed=_get(run_config, "seed", int, 0),
            device=_get(run_config, "device", str, "auto"),
            eval_fraction=_get(run_config, "eval-fraction", float, 0.25),
            eval_batches=_get(run_config, "eval-batches", int, 8),
            server_eval_every=_get(run_config, "server-eval-every", int, 1),
            server_eval_datasets=tuple(d.strip() for d in datasets.split(",") if d.strip()),
            checkpoint_every=_get(run_config, "checkpoint-every", int, 1),
            output_dir=_get(run_config, "output-dir", str, "outputs"),
            run_name=_get(run_config, "run-name", str, ""),
            resume=_get(run_config, "resume", bool, False),
            max_update_norm=_get(run_config, "max-update-norm", float, 1e3),
            round_timeout=_get(run_config, "round-timeout", float, 3600.0),
            wandb_project=_get(run_config, "wandb-project", str, "zk0"),
            hub_repo_id=_get(run_config, "hub-repo-id", str, ""),
            hub_private=_get(run_config, "hub-private", bool, True),
        )
        for name in ("num_server_rounds", "min_nodes", "local_steps", "batch_size"):
            if getattr(settings, name) < 1:
                raise ConfigError(f"run config '{name.replace('_', '-')}' must be at least 1")
        return settings

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def model_config(self) -> ModelConfig:
        return ModelConfig(model=self.model, seed=self.seed, device=self.device, cache_dir=default_cache_dir())

    def train_config(self, server_round: int, proximal_mu: float) -> TrainConfig:
        return TrainConfig(
            local_steps=self.local_steps,
            batch_size=self.batch_size,
            lr=self.lr,
            proximal_mu=proximal_mu,
            seed=self.seed * 100_003 + server_round,
            num_workers=self.num_workers,
        )

    def run_dir(self) -> Path:
        """Where this run's checkpoints and metrics go; a fixed run-name makes resume find it."""
        name = self.run_name or time.strftime("run-%Y%m%d-%H%M%S")
        return Path(self.output_dir).expanduser().absolute() / name
