"""What a node does with its private dataset: build the policy, train, evaluate.

Everything here runs on the node. Only trainable weights and anonymous figures are
returned to the ClientApp for sending; the dataset location stays in this process.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from zk0.config import ConfigError, FederationSettings
from zk0.data.cameras import CameraMappedDataset, map_cameras
from zk0.data.loading import open_dataset, open_metadata, split_episodes
from zk0.data.uri import DatasetURIError, parse_dataset_uri
from zk0.federation import protocol as wire
from zk0.model.factory import build_policy, build_processors, default_cache_dir
from zk0.model.weights import get_trainable_arrays, set_trainable_arrays
from zk0.privacy import anonymous_dataset_label, load_or_create_secret
from zk0.training.local import evaluate_loss, train_steps

log = logging.getLogger(__name__)


def node_dataset_uri(node_config: dict[str, Any]) -> str:
    """A deployed node's dataset URI: `dataset-uri` from its node config, `local:` or `hf:` only.

    Generated (`synthetic:`) data is refused here: a production node must never train on it
    unnoticed. Virtual nodes in a simulation take theirs from run config `sim-datasets` instead
    (zk0.simulation.virtual_node_dataset_uri)."""
    uri = node_config.get("dataset-uri")
    if not uri:
        raise ConfigError(
            "node config lacks 'dataset-uri': start the SuperNode with "
            "--node-config \"dataset-uri='local:/abs/path/to/dataset'\" (or hf:owner/name)"
        )
    try:
        parse_dataset_uri(str(uri))
    except DatasetURIError as err:
        raise ConfigError(f"node config 'dataset-uri': {err}") from None
    return str(uri)


def node_label(dataset_uri: str) -> str:
    secret_file = Path(os.environ.get("ZK0_LABEL_SECRET", default_cache_dir() / "label-secret"))
    return anonymous_dataset_label(dataset_uri, load_or_create_secret(secret_file))


@dataclass
class NodeResult:
    arrays: OrderedDict[str, np.ndarray] | None
    metrics: dict[str, float]


class NodeTrainer:
    """The node's policy and data for one message: open, check, split, then train or evaluate."""

    def __init__(self, settings: FederationSettings, dataset_uri: str) -> None:
        from lerobot.datasets.factory import resolve_delta_timestamps

        self.settings = settings
        self.dataset_uri = dataset_uri
        self.meta = open_metadata(dataset_uri)  # schema checked here, before any training
        self.cameras = map_cameras(self.meta.features, dataset_uri)  # which camera feeds which image input
        policy_meta = self.cameras.policy_metadata(self.meta)
        model_cfg = settings.model_config()
        self.policy = build_policy(model_cfg, policy_meta)
        self.preprocessor, _ = build_processors(self.policy.config, policy_meta.stats, model_cfg.resolved_device())
        self.split = split_episodes(self.meta.total_episodes, settings.eval_fraction, settings.seed)
        self._delta_timestamps = resolve_delta_timestamps(self.policy.config, self.meta)

    def _dataset(self, episodes: list[int]):
        if not episodes:
            raise ValueError("the node's dataset has too few episodes to split into train and eval")
        return CameraMappedDataset(open_dataset(self.dataset_uri, episodes, self._delta_timestamps), self.cameras)

    @cached_property
    def train_dataset(self):
        return self._dataset(self.split.train)

    @cached_property
    def eval_dataset(self):  # opened once, whether it scores before training or on its own
        return self._dataset(self.split.eval)

    def train(
        self,
        arrays: dict[str, np.ndarray],
        server_round: int,
        proximal_mu: float,
        evaluate_first: bool = False,
        lr_scale: float = 1.0,
    ) -> NodeResult:
        metrics: dict[str, float] = {}
        if evaluate_first and self.split.eval:  # no held-out episodes: train anyway, unscored
            # Score the received weights before they change: the same figure a separate
            # evaluate message would give, without a second ClientApp process per round.
            scored = self.evaluate(arrays).metrics
            metrics = {wire.EVAL_LOSS: scored[wire.EVAL_LOSS], wire.EVAL_NUM_EXAMPLES: scored[wire.NUM_EXAMPLES]}
        set_trainable_arrays(self.policy, arrays)
        cfg = self.settings.train_config(server_round, proximal_mu, lr_scale)
        result = train_steps(self.policy, self.preprocessor, self.train_dataset, cfg)
        losses = result.losses
        quarter = max(1, len(losses) // 4)  # single steps are noisy: compare quarter means
        metrics |= {
            wire.NUM_EXAMPLES: float(result.num_examples),
            wire.TRAIN_LOSS: float(np.mean(losses)),
            wire.TRAIN_LOSS_START: float(np.mean(losses[:quarter])),
            wire.TRAIN_LOSS_END: float(np.mean(losses[-quarter:])),
            wire.SAMPLES_PER_SECOND: result.samples_per_second,
            wire.TRAIN_SECONDS: result.seconds,
            wire.LEARNING_RATE: float(np.mean(result.lrs)),
        }
        return NodeResult(arrays=get_trainable_arrays(self.policy), metrics=metrics)

    def evaluate(self, arrays: dict[str, np.ndarray]) -> NodeResult:
        set_trainable_arrays(self.policy, arrays)
        loss, count = evaluate_loss(
            self.policy,
            self.preprocessor,
            self.eval_dataset,
            batch_size=self.settings.batch_size,
            seed=self.settings.seed,
            max_batches=self.settings.eval_batches,
            num_workers=self.settings.num_workers,
        )
        return NodeResult(arrays=None, metrics={wire.EVAL_LOSS: loss, wire.NUM_EXAMPLES: float(count)})
