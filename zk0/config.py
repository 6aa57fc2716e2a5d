"""Typed view of Flower's run config, shared by the ServerApp and the ClientApp.

`[tool.flwr.app.config]` in pyproject.toml holds the one set of defaults: `flwr run` sends
it, merged with `--run-config` overrides (Flower refuses keys it does not list).
`FederationSettings` mirrors it field for field (key `local-steps` is field `local_steps`)
with the same defaults, so settings built without Flower (tests, benchmarks) describe the
same run; a unit test holds the two equal. Nothing is hard-coded in the apps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

from zk0.data.uri import DatasetURIError, parse_dataset_uri
from zk0.federation.protocol import TRANSFERS
from zk0.model.factory import ModelConfig, default_cache_dir
from zk0.training.local import TrainConfig
from zk0.training.schedule import COSINE, SCHEDULES, LRSchedule, round_first_step


class ConfigError(ValueError):
    """A missing or ill-typed config value; the message names the key and the fix."""


def config_key(field_name: str) -> str:
    """The run-config key of a `FederationSettings` field."""
    return field_name.replace("_", "-")


def parse_every(key: str, value: object) -> int:
    """The rule for every `*-every` setting: a whole number of rounds, at least 0.

    N > 0 does the work after each round divisible by N; 0 turns the periodic work off
    (server eval and checkpoints still run after the last round, see `RoundPlan`).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"run config '{key}' = {value!r} should be a whole number of rounds >= 0 (0 = off): "
            f"set e.g. {key} = 5 in --run-config or [tool.flwr.app.config]"
        )
    return value


# Counts that make no sense at zero: a run needs rounds, nodes, steps and batches.
_AT_LEAST_ONE = ("num_server_rounds", "min_nodes", "local_steps", "batch_size", "eval_batches")


@dataclass(frozen=True)
class FederationSettings:
    """What one federated run does. Defaults equal pyproject's `[tool.flwr.app.config]`."""

    num_server_rounds: int = 3
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    client_eval_every: int = 0  # evaluate messages after every N rounds; 0 = never
    min_nodes: int = 2
    local_steps: int = 20
    batch_size: int = 8
    num_workers: int = 0
    lr: float = 1e-3  # the peak when a schedule is on
    lr_schedule: str = "constant"  # or "cosine": warm-up, then decay over all rounds' steps
    lr_warmup_steps: int = 0  # global steps (rounds x local steps) of linear warm-up; cosine only
    lr_min_ratio: float = 0.025  # cosine's floor as a fraction of lr (SmolVLA's preset: 2.5e-6 / 1e-4)
    proximal_mu: float = 0.01
    plateau_patience: int = 0  # server evaluations without a new best before lr and mu change; 0 = off
    plateau_lr_factor: float = 0.5  # lr x this on a plateau (not below lr x lr-min-ratio)
    plateau_mu_factor: float = 2.0  # proximal-mu x this on a plateau
    model: str = "tiny"
    seed: int = 0
    device: str = "auto"
    eval_fraction: float = 0.25
    eval_batches: int = 4
    server_eval_every: int = 1  # 0 = after the last round only
    server_eval_datasets: str = "synthetic:server-eval-a,synthetic:server-eval-b"  # comma-separated URIs
    # Simulation only: virtual node i trains on entry i mod N of these N comma-separated URIs.
    sim_datasets: str = "synthetic:sim-0,synthetic:sim-1,synthetic:sim-2,synthetic:sim-3"
    checkpoint_every: int = 1  # 0 = after the last round only
    output_dir: str = "outputs"
    run_name: str = ""
    resume: bool = False
    max_update_norm: float = 1000.0
    transfer: str = "bf16"  # how weights travel: fp32, bf16, int8-delta (zk0.federation.transfer)
    round_timeout: float = 3600.0
    wandb_project: str = "zk0"
    hub_repo_id: str = ""
    hub_private: bool = True

    def __post_init__(self) -> None:
        kinds = get_type_hints(type(self))
        for f in fields(self):
            key, value, kind = config_key(f.name), getattr(self, f.name), kinds[f.name]
            if key.endswith("-every"):
                parse_every(key, value)
                continue
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))  # TOML writes 1.0 as 1 just as well
            elif isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
                raise ConfigError(
                    f"run config '{key}' = {value!r} should be {kind.__name__}, like its default {f.default!r}"
                )
        for name in _AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ConfigError(f"run config '{config_key(name)}' must be at least 1")
        if self.transfer not in TRANSFERS:
            choices = ", ".join(repr(t) for t in TRANSFERS)
            raise ConfigError(
                f"run config 'transfer' = {self.transfer!r} should be one of {choices}: "
                f'set e.g. transfer = "bf16" in --run-config or [tool.flwr.app.config]'
            )
        self._check_lr_schedule()
        self._check_sim_datasets()

    def _check_lr_schedule(self) -> None:
        if self.lr_schedule not in SCHEDULES:
            choices = ", ".join(repr(s) for s in SCHEDULES)
            raise ConfigError(
                f"run config 'lr-schedule' = {self.lr_schedule!r} should be one of {choices}: "
                f'set e.g. lr-schedule = "cosine" in --run-config or [tool.flwr.app.config]'
            )
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise ConfigError(
                f"run config 'lr-min-ratio' = {self.lr_min_ratio!r} should be a fraction of lr between 0 and 1"
            )
        if self.plateau_patience < 0 or not 0.0 < self.plateau_lr_factor <= 1.0 or self.plateau_mu_factor < 1.0:
            raise ConfigError(
                f"run config plateau-patience = {self.plateau_patience}, plateau-lr-factor = "
                f"{self.plateau_lr_factor!r}, plateau-mu-factor = {self.plateau_mu_factor!r}: the patience should be "
                "at least 0 (0 = off), the lr factor in (0, 1] and the mu factor at least 1, e.g. 2, 0.5 and 2.0"
            )
        total = self.num_server_rounds * self.local_steps
        if self.lr_warmup_steps < 0 or (self.lr_schedule == COSINE and self.lr_warmup_steps >= total):
            raise ConfigError(
                f"run config 'lr-warmup-steps' = {self.lr_warmup_steps} should be at least 0 and, with the cosine "
                f"schedule, fewer than the run's {total} steps (num-server-rounds x local-steps)"
            )

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> FederationSettings:
        """Settings from Flower's run config; a key it lacks takes the default."""
        known = {config_key(f.name): f.name for f in fields(cls)}
        unknown = sorted(set(run_config) - set(known))
        if unknown:
            raise ConfigError(
                f"run config has unknown key(s) {', '.join(unknown)}: "
                "the settings are the keys of [tool.flwr.app.config] in pyproject.toml"
            )
        return cls(**{known[key]: value for key, value in run_config.items()})

    def _check_sim_datasets(self) -> None:
        if not self.sim_dataset_uris:
            raise ConfigError(
                "run config 'sim-datasets' is empty: list the simulation's dataset URIs, comma-separated "
                '(e.g. sim-datasets = "synthetic:sim-0,hf:owner/name"); virtual node i takes entry i mod N'
            )
        for uri in self.sim_dataset_uris:
            try:
                parse_dataset_uri(uri, synthetic=True)
            except DatasetURIError as err:
                raise ConfigError(f"run config 'sim-datasets': {err}") from None

    @property
    def sim_dataset_uris(self) -> tuple[str, ...]:
        """`sim-datasets` as a list of dataset URIs (comma-separated, blanks around each ignored)."""
        return tuple(d.strip() for d in self.sim_datasets.split(",") if d.strip())

    def sim_dataset_for(self, partition_id: int) -> str:
        """The dataset of simulation partition (virtual node) `partition_id`: entry i mod N, so
        more virtual nodes than datasets share them in turn, and fewer leave the tail unused."""
        if isinstance(partition_id, bool) or not isinstance(partition_id, int) or partition_id < 0:
            raise ConfigError(f"partition id {partition_id!r} should be a whole number >= 0 (Flower's partition-id)")
        uris = self.sim_dataset_uris
        return uris[partition_id % len(uris)]

    @property
    def eval_datasets(self) -> tuple[str, ...]:
        """`server-eval-datasets` as a list of dataset URIs."""
        return tuple(d.strip() for d in self.server_eval_datasets.split(",") if d.strip())

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def model_config(self) -> ModelConfig:
        return ModelConfig(model=self.model, seed=self.seed, device=self.device, cache_dir=default_cache_dir())

    def lr_schedule_for_run(self) -> LRSchedule:
        """The run's one schedule, over `num-server-rounds x local-steps` global steps."""
        return LRSchedule(
            kind=self.lr_schedule,
            total_steps=self.num_server_rounds * self.local_steps,
            warmup_steps=self.lr_warmup_steps,
            min_ratio=self.lr_min_ratio,
        )

    def train_config(self, server_round: int, proximal_mu: float, lr_scale: float = 1.0) -> TrainConfig:
        """What round `server_round` (from Flower's `server-round`) trains with; `lr_scale` is
        the server's plateau adjustment (`lr-scale`)."""
        return TrainConfig(
            local_steps=self.local_steps,
            batch_size=self.batch_size,
            lr=self.lr * lr_scale,
            schedule=self.lr_schedule_for_run() if self.lr_schedule == COSINE else None,
            first_step=round_first_step(server_round, self.local_steps),
            proximal_mu=proximal_mu,
            seed=self.seed * 100_003 + server_round,
            num_workers=self.num_workers,
        )

    def run_dir(self) -> Path:
        """Where this run's checkpoints and metrics go; a fixed run-name makes resume find it."""
        name = self.run_name or time.strftime("run-%Y%m%d-%H%M%S")
        return Path(self.output_dir).expanduser().absolute() / name
