"""Two nodes whose video datasets have different cameras federate: each is opened through the
real loader, its cameras mapped onto the policy's camera1..3, and both nodes build the same
policy, train it, and score each other's weights; the server evaluates on both and on a
wrist-only `synthetic:` set. A dataset no camera of which maps is refused before training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zk0.config import FederationSettings
from zk0.data.cameras import POLICY_CAMERAS, CameraMappingError
from zk0.data.schema import CAMERA_PREFIX
from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset

pytestmark = pytest.mark.timeout(900)
SLOTS = {CAMERA_PREFIX + slot for slot in POLICY_CAMERAS}


@pytest.fixture(scope="module")
def video_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("camera-sets")
    small = {"episodes": 3, "frames_per_episode": 12}
    return {
        "two": write_synthetic_dataset(root / "two", SyntheticDatasetConfig.recording(seed=1, **small)),
        "four": write_synthetic_dataset(
            root / "four",
            SyntheticDatasetConfig.recording(cameras=("overhead_cam", "gripper", "side", "usb_extra"), seed=2, **small),
        ),
    }


@pytest.fixture(scope="module")
def settings(zk0_cache: Path) -> FederationSettings:
    return FederationSettings(
        model="tiny", device="cpu", local_steps=2, batch_size=2, eval_batches=1, eval_fraction=0.34, seed=0
    )


def test_nodes_with_different_cameras_build_one_policy_and_federate(video_datasets, settings):
    from zk0.model.weights import get_trainable_arrays
    from zk0.node import NodeTrainer

    two = NodeTrainer(settings, f"local:{video_datasets['two']}")
    four = NodeTrainer(settings, f"local:{video_datasets['four']}")
    assert {k.removeprefix(CAMERA_PREFIX): v.removeprefix(CAMERA_PREFIX) for k, v in four.cameras.renames.items()} == {
        "overhead_cam": "camera1",
        "gripper": "camera2",
        "side": "camera3",
    }
    assert four.cameras.dropped == (CAMERA_PREFIX + "usb_extra",)
    assert two.meta.video_keys and four.meta.video_keys  # cameras stored as video, as recorded

    # Both policies take the same inputs (state + camera1..3), so their weights are exchangeable.
    for trainer in (two, four):
        assert set(trainer.policy.config.image_features) == SLOTS
    start = get_trainable_arrays(two.policy)
    assert {k: v.shape for k, v in start.items()} == {k: v.shape for k, v in get_trainable_arrays(four.policy).items()}

    # Samples carry the policy's names only: mapped cameras renamed, the extra camera gone.
    assert {k for k in two.train_dataset[0] if k.startswith(CAMERA_PREFIX) and "_is_pad" not in k} == {
        CAMERA_PREFIX + "camera1",
        CAMERA_PREFIX + "camera2",
    }
    assert {k for k in four.train_dataset[0] if k.startswith(CAMERA_PREFIX) and "_is_pad" not in k} == SLOTS

    trained = two.train(start, server_round=1, proximal_mu=0.0, evaluate_first=True)
    assert trained.arrays is not None and np.isfinite(trained.metrics["train-loss"])
    scored = four.evaluate(trained.arrays)  # one node's update, scored on the other's cameras
    assert np.isfinite(scored.metrics["eval-loss"]) and scored.metrics["num-examples"] > 0
    assert np.isfinite(four.train(trained.arrays, server_round=2, proximal_mu=0.01).metrics["train-loss"])


def test_the_server_evaluates_on_every_camera_set(video_datasets, settings):
    from dataclasses import replace

    from zk0.federation.global_model import GlobalModel

    wrist_only = "synthetic:wrist-only?video=true&cameras=wrist&episodes=2&frames=12"
    uris = [f"local:{video_datasets['two']}", f"local:{video_datasets['four']}", wrist_only]
    model = GlobalModel(replace(settings, server_eval_datasets=",".join(uris)))
    losses = model.evaluate(model.initial_arrays())
    assert set(losses) == {*uris, "mean"} and all(np.isfinite(v) for v in losses.values())


def test_a_dataset_with_no_mappable_camera_is_refused_before_training(settings):
    from zk0.node import NodeTrainer

    with pytest.raises(CameraMappingError, match=r"none of its cameras \(usb0, usb1\)"):
        NodeTrainer(settings, "synthetic:unnamed-cams?cameras=usb0+usb1&episodes=2&frames=8")
