"""Build SmolVLA policies and their processors for a dataset, offline or from a pretrained base."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from zk0.model.backbone import BACKBONES, ensure_backbone

PRETRAINED_DEFAULT = "lerobot/smolvla_base"


def default_cache_dir() -> Path:
    return Path(os.environ.get("ZK0_CACHE_DIR", Path.home() / ".cache" / "zk0"))


@dataclass(frozen=True)
class ModelConfig:
    """Which SmolVLA to build.

    `model` is a backbone preset built locally with random frozen weights ("tiny" for tests
    and simulation, "smolvlm2-500m" for the full-size architecture) or a pretrained SmolVLA
    policy: a Hub repo id such as lerobot/smolvla_base (production) or a local directory.
    """

    model: str = PRETRAINED_DEFAULT
    seed: int = 0
    device: str = "auto"
    cache_dir: Path = field(default_factory=default_cache_dir)

    @property
    def is_preset(self) -> bool:
        return self.model in BACKBONES

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        return "cuda" if torch.cuda.is_available() else "cpu"


def _preset_policy_config(model_cfg: ModelConfig):
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    spec = BACKBONES[model_cfg.model]
    backbone_dir = ensure_backbone(spec, model_cfg.cache_dir)
    sizes = {}
    if spec.name == "tiny":
        # Small enough to train on a CPU in milliseconds per step.
        sizes = {"chunk_size": 10, "n_action_steps": 10, "tokenizer_max_length": 32}
    return SmolVLAConfig(
        vlm_model_name=str(backbone_dir),
        load_vlm_weights=False,
        resize_imgs_with_padding=(spec.image_size, spec.image_size),
        device=model_cfg.resolved_device(),
        push_to_hub=False,
        **sizes,
    )


def make_policy_config(model_cfg: ModelConfig):
    """The SmolVLA config for `model_cfg`, without weights."""
    from lerobot.configs.policies import PreTrainedConfig

    if model_cfg.is_preset:
        return _preset_policy_config(model_cfg)
    config = PreTrainedConfig.from_pretrained(model_cfg.model)
    config.pretrained_path = model_cfg.model
    config.device = model_cfg.resolved_device()
    return config


def build_policy(model_cfg: ModelConfig, ds_meta):
    """SmolVLA shaped for `ds_meta`'s features; frozen weights identical for the same seed."""
    from lerobot.policies.factory import make_policy

    policy_cfg = make_policy_config(model_cfg)
    # Random frozen weights must agree across nodes and the server: seed before building.
    torch.manual_seed(model_cfg.seed)
    return make_policy(policy_cfg, ds_meta=ds_meta)


def build_processors(policy_cfg, dataset_stats, device: str):
    """Pre/post processors that normalise with `dataset_stats` (they stay on the node)."""
    from lerobot.policies.factory import make_pre_post_processors

    if policy_cfg.pretrained_path:
        return make_pre_post_processors(
            policy_cfg,
            pretrained_path=policy_cfg.pretrained_path,
            preprocessor_overrides={
                "device_processor": {"device": device},
                "normalizer_processor": {"stats": dataset_stats},
            },
            postprocessor_overrides={"unnormalizer_processor": {"stats": dataset_stats}},
        )
    return make_pre_post_processors(policy_cfg, dataset_stats=dataset_stats)
