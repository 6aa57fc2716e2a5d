"""Shared fixtures: an isolated zk0 cache, synthetic SO-100 datasets and tiny SmolVLA parts,
all made locally (nothing is downloaded)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ["FLWR_TELEMETRY_ENABLED"] = "0"

REPO = Path(__file__).resolve().parents[1]
NUMPY_APP = REPO / "bench" / "numpy_app"


@pytest.fixture(scope="session")
def zk0_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private ZK0_CACHE_DIR for the whole session (backbones, simulation datasets)."""
    cache = tmp_path_factory.mktemp("zk0-cache")
    os.environ["ZK0_CACHE_DIR"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset

    root = tmp_path_factory.mktemp("datasets") / "so100-synth"
    return write_synthetic_dataset(root, SyntheticDatasetConfig(episodes=6, frames_per_episode=30, seed=7))


@pytest.fixture(scope="session")
def tiny_model_config(zk0_cache: Path):
    from zk0.model.factory import ModelConfig

    return ModelConfig(model="tiny", seed=0, device="cpu", cache_dir=zk0_cache)


@pytest.fixture(scope="session")
def synth_meta(synth_dataset: Path):
    from zk0.data.loading import open_metadata

    return open_metadata(f"local:{synth_dataset}")


@pytest.fixture
def tiny_policy(tiny_model_config, synth_meta):
    from zk0.model.factory import build_policy

    return build_policy(tiny_model_config, synth_meta)


@pytest.fixture
def flower_task_identity():
    """Flower stamps messages with the run of the process; outside a run, give it one."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield TaskIdentity
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


@pytest.fixture(scope="session")
def release_fab() -> bytes:
    """The FAB `flwr run REPO` uploads (built once: walking the checkout takes a while)."""
    from zk0.supernode import trust

    return trust.build_fab(REPO)


@pytest.fixture(scope="session")
def release_hashes(tmp_path_factory: pytest.TempPathFactory, release_fab: bytes) -> Iterator[dict[str, str]]:
    """zk0-supernode runs only apps on its allowlist: every node started in a session that uses
    this trusts the apps the tests submit (this checkout's zk0 app and the numpy app), by
    their hash as `zk0 app hash` computes it, once per session."""
    from zk0.supernode import trust

    hashes = {"zk0": trust.fab_sha256(release_fab), "numpy": trust.app_hash(NUMPY_APP)}
    allowlist = tmp_path_factory.mktemp("trust") / "trusted-apps.txt"
    allowlist.write_text("".join(f"# {name}\n{digest}\n" for name, digest in hashes.items()))
    old = {k: os.environ.get(k) for k in (trust.FILE_ENV, trust.HASHES_ENV)}
    os.environ[trust.FILE_ENV] = str(allowlist)  # every process inherits it (launch.flower_env)
    os.environ.pop(trust.HASHES_ENV, None)
    yield hashes
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
