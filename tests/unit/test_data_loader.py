"""The loader decodes only what the policy reads (one frame per camera per sample, the action
chunk as rows), returns what lerobot returns, and keeps its workers for the round."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lerobot.datasets.factory import resolve_delta_timestamps
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

from zk0.data.frames import ColumnReader, needed_offsets
from zk0.data.loading import open_dataset, open_metadata
from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset
from zk0.training.local import PREFETCH_BATCHES, _loader

CHUNK = 50  # SmolVLA's default chunk_size: lerobot reads 50 action rows per sample
VIDEO_KEYS = ("observation.images.front", "observation.images.wrist")


@pytest.fixture(scope="module")
def video_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = SyntheticDatasetConfig.recording(episodes=2, frames_per_episode=12, seed=5)
    return write_synthetic_dataset(tmp_path_factory.mktemp("loader-video") / "so100-video", cfg)


def _offsets(root: Path, observation_steps: int = 1) -> dict:
    """SmolVLA's offsets (observations at the current frame, a 50-row action chunk); with
    `observation_steps` > 1, a history of frames as other lerobot policies ask for."""
    meta = open_metadata(f"local:{root}")
    delta = resolve_delta_timestamps(SmolVLAConfig(chunk_size=CHUNK), meta)
    history = [-step / meta.fps for step in reversed(range(observation_steps))]
    return {key: history if key.startswith("observation.") else offsets for key, offsets in delta.items()}


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of the frames lerobot's decoders really decode (they still decode)."""
    import datasets.features.image as hf_image
    import lerobot.datasets.dataset_reader as reader

    counts = {"images": 0, "video_frames": 0}
    decode_image, decode_video = hf_image.Image.decode_example, reader.decode_video_frames

    def count_image(self, *args, **kwargs):
        counts["images"] += 1
        return decode_image(self, *args, **kwargs)

    def count_video(path, timestamps, *args, **kwargs):
        counts["video_frames"] += len(timestamps)
        return decode_video(path, timestamps, *args, **kwargs)

    monkeypatch.setattr(hf_image.Image, "decode_example", count_image)
    monkeypatch.setattr(reader, "decode_video_frames", count_video)
    return counts


def _same_item(ours: dict, plain: dict) -> None:
    """Our item holds lerobot's values; a current-frame-only observation lacks its time axis."""
    for key, value in plain.items():
        if key.endswith("_is_pad") and key not in ours:
            assert not value.any(), key  # offset 0 is never padding
            continue
        got = ours[key]
        if isinstance(value, torch.Tensor):
            expected = value.squeeze(0) if got.shape != value.shape and value.shape[:1] == (1,) else value
            assert got.dtype == expected.dtype and torch.equal(got, expected), key
        else:
            assert got == value, key


def test_offsets_keep_the_action_chunk_and_drop_current_frame_only_observations() -> None:
    delta = {"observation.state": [0.0], "observation.images.front": [0.0], "action": [0.0, 0.1]}
    assert needed_offsets(delta) == {"action": [0.0, 0.1]}
    history = {"observation.state": [-0.1, 0.0], "observation.images.front": [0.0], "action": [0.0]}
    assert needed_offsets(history) == {"observation.state": [-0.1, 0.0], "action": [0.0]}
    assert needed_offsets({"observation.state": [0.0]}) is None and needed_offsets(None) is None


def test_an_image_sample_decodes_one_frame_per_camera(synth_dataset: Path, decoded: dict[str, int]) -> None:
    dataset = open_dataset(f"local:{synth_dataset}", [0, 1], _offsets(synth_dataset))
    assert isinstance(dataset.reader, ColumnReader)
    for index in (0, 17, len(dataset) - 1):  # episode start, middle, last frame (padded chunk)
        decoded["images"] = 0
        item = dataset[index]
        assert decoded["images"] == 1  # one camera, not 1 + the 50 rows of the action chunk
        assert item["observation.images.front"].shape == (3, 48, 64)
        assert item["observation.state"].shape == (6,)
        assert item["action"].shape == (CHUNK, 6) and item["action_is_pad"].shape == (CHUNK,)
    assert item["action_is_pad"][1:].all() and not item["action_is_pad"][0]  # the episode's last frame


def test_a_video_sample_decodes_one_frame_per_camera(video_dataset: Path, decoded: dict[str, int]) -> None:
    dataset = open_dataset(f"local:{video_dataset}", [0, 1], _offsets(video_dataset))
    for index in (0, 5, 23):
        decoded["video_frames"] = 0
        item = dataset[index]
        assert decoded["video_frames"] == len(VIDEO_KEYS)
        assert all(item[key].shape == (3, 48, 64) for key in VIDEO_KEYS)
        assert item["observation.state"].shape == (6,) and item["action"].shape == (CHUNK, 6)


@pytest.mark.parametrize("observation_steps", [1, 2])
def test_items_hold_what_plain_lerobot_returns(synth_dataset: Path, observation_steps: int, decoded) -> None:
    delta = _offsets(synth_dataset, observation_steps)
    ours = open_dataset(f"local:{synth_dataset}", [1, 3], delta)
    plain = LeRobotDataset("local/plain", root=synth_dataset, episodes=[1, 3], delta_timestamps=delta)
    decoded["images"] = 0
    for index in (0, 1, 29, 30, 59):  # both episodes' edges: history and chunk padding
        _same_item(ours[index], plain[index])
    if observation_steps == 2:  # a history is still read, from the camera's own column
        assert ours[31]["observation.images.front"].shape == (2, 3, 48, 64)


def test_video_items_hold_what_plain_lerobot_returns(video_dataset: Path) -> None:
    delta = _offsets(video_dataset, observation_steps=2)
    ours = open_dataset(f"local:{video_dataset}", [1], delta)
    plain = LeRobotDataset(
        "local/plain", root=video_dataset, episodes=[1], delta_timestamps=delta, video_backend="pyav"
    )
    for index in (0, 6, 11):
        _same_item(ours[index], plain[index])


def test_the_loader_keeps_its_workers_for_the_round(synth_dataset: Path) -> None:
    dataset = open_dataset(f"local:{synth_dataset}", [0], _offsets(synth_dataset))
    loader = _loader(dataset, batch_size=8, seed=0, shuffle=True, num_workers=1)
    assert loader.persistent_workers and loader.prefetch_factor == PREFETCH_BATCHES and not loader.pin_memory
    epochs = [[batch["index"] for batch in loader] for _ in range(2)]
    worker_pool = loader._iterator  # persistent workers: one pool serves every epoch
    assert worker_pool is not None and [len(e) for e in epochs] == [3, 3]  # 30 frames, batches of 8, drop_last
    assert not torch.equal(torch.cat(epochs[0]), torch.cat(epochs[1]))  # reshuffled each epoch
    next(iter(loader))
    assert loader._iterator is worker_pool
    single = _loader(dataset, batch_size=8, seed=0, shuffle=False, num_workers=0)
    assert not single.persistent_workers and single.prefetch_factor is None
