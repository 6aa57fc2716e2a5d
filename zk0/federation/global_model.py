"""The server's copy of the policy: initial weights, server-side evaluation, checkpoints."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zk0.config import ConfigError, FederationSettings
from zk0.data.cameras import CameraMappedDataset, map_cameras
from zk0.data.loading import open_dataset, open_metadata, resolve
from zk0.federation.checkpoints import save_checkpoint
from zk0.model.factory import build_policy, build_processors
from zk0.model.weights import get_trainable_arrays, set_trainable_arrays
from zk0.training.local import ActionTrace, action_trace, evaluate_loss

log = logging.getLogger(__name__)


@dataclass
class EvalSet:
    name: str  # as configured by the admin; server-side only
    preprocessor: object
    postprocessor: object  # back to the dataset's units, for action charts
    dataset: object


class GlobalModel:
    """Builds the policy from the first server eval dataset's features; evaluates on all."""

    def __init__(self, settings: FederationSettings) -> None:
        from lerobot.datasets.compute_stats import aggregate_stats
        from lerobot.datasets.factory import resolve_delta_timestamps

        if not settings.eval_datasets:
            raise ConfigError(
                "run config 'server-eval-datasets' is empty: list at least one dataset URI "
                "(comma-separated); the server builds the policy from its features and evaluates on it"
            )
        self.settings = settings
        model_cfg = settings.model_config()
        self.device = model_cfg.resolved_device()
        uris = [resolve(u) for u in settings.eval_datasets]  # a synthetic: one is generated here, once
        metas = [open_metadata(u) for u in uris]
        cameras = [map_cameras(m.features, name) for m, name in zip(metas, settings.eval_datasets, strict=True)]
        views = [c.policy_metadata(m) for c, m in zip(cameras, metas, strict=True)]  # the policy's camera names
        self.policy = build_policy(model_cfg, views[0])
        self.eval_sets = []
        for name, uri, meta, view, camera_map in zip(settings.eval_datasets, uris, metas, views, cameras, strict=True):
            pre, post = build_processors(self.policy.config, view.stats, self.device)
            delta = resolve_delta_timestamps(self.policy.config, meta)  # the dataset's own keys
            dataset = CameraMappedDataset(open_dataset(uri, list(range(meta.total_episodes)), delta), camera_map)
            self.eval_sets.append(EvalSet(name=name, preprocessor=pre, postprocessor=post, dataset=dataset))
        # Checkpoints carry processors normalising with the eval datasets' pooled statistics.
        stats = aggregate_stats([v.stats for v in views]) if len(views) > 1 else views[0].stats
        self.preprocessor, self.postprocessor = build_processors(self.policy.config, stats, self.device)

    def initial_arrays(self) -> OrderedDict[str, np.ndarray]:
        return get_trainable_arrays(self.policy)

    def evaluate(self, arrays: dict[str, np.ndarray]) -> dict[str, float]:
        set_trainable_arrays(self.policy, arrays)
        losses = {}
        for eval_set in self.eval_sets:
            loss, _ = evaluate_loss(
                self.policy,
                eval_set.preprocessor,
                eval_set.dataset,
                batch_size=self.settings.batch_size,
                seed=self.settings.seed,
                max_batches=self.settings.eval_batches,
                num_workers=self.settings.num_workers,
            )
            losses[eval_set.name] = loss
        losses["mean"] = float(np.mean(list(losses.values())))
        return losses

    def action_traces(self, arrays: dict[str, np.ndarray], max_frames: int) -> dict[str, ActionTrace]:
        """Per eval dataset, its first episode's recorded actions and the policy's (the charts)."""
        set_trainable_arrays(self.policy, arrays)
        return {
            s.name: action_trace(
                self.policy, s.preprocessor, s.postprocessor, s.dataset, max_frames=max_frames, seed=self.settings.seed
            )
            for s in self.eval_sets
        }

    def save(self, run_dir: Path, server_round: int, arrays: dict[str, np.ndarray], state: dict) -> Path:
        set_trainable_arrays(self.policy, arrays)
        return save_checkpoint(run_dir, server_round, self.policy, self.preprocessor, self.postprocessor, state)
