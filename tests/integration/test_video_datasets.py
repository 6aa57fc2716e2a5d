"""Video datasets as lerobot-record stores an SO-100 session: written by `zk0 dataset synth
--video` (lerobot encodes), opened by a node that names its video decoder once and shows no
torchcodec traceback, and trained on; without FFmpeg's libraries PyAV decodes the same frames."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from zk0.data import video
from zk0.data.loading import open_dataset, open_metadata
from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset

CFG = SyntheticDatasetConfig.recording(episodes=2, frames_per_episode=12, seed=11)
KEYS = ("observation.images.front", "observation.images.wrist")
TORCHCODEC_TRACEBACK = "libtorchcodec loading traceback"  # in torchcodec's error, which lerobot logs


@pytest.fixture(scope="module")
def video_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("video") / "so100-video", CFG)


@pytest.fixture
def fresh_decoder():
    """The decoder choice and its log line as in a new process."""
    video.video_decoder.cache_clear()
    video.log_video_decoder.cache_clear()
    yield
    video.video_decoder.cache_clear()
    video.log_video_decoder.cache_clear()


def _decoder_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("video decoder:")]


def test_synth_video_is_stored_as_lerobot_records_it(video_dataset: Path) -> None:
    info = json.loads((video_dataset / "meta" / "info.json").read_text())
    assert info["fps"] == 30 and info["codebase_version"] == "v3.0"
    for key in KEYS:
        feature = info["features"][key]
        assert feature["dtype"] == "video" and feature["shape"] == [48, 64, 3]
        # lerobot's default encoder: SVT-AV1, yuv420p, as lerobot-record writes it.
        assert feature["info"]["video.codec"] == "av1" and feature["info"]["video.pix_fmt"] == "yuv420p"
        assert feature["info"]["video.fps"] == 30
        assert list((video_dataset / "videos" / key).rglob("*.mp4")), key
    assert not (video_dataset / "images").exists()  # encoded while recording, no PNGs left over
    meta = open_metadata(f"local:{video_dataset}")
    assert (meta.total_episodes, meta.total_frames) == (2, 24) and sorted(meta.video_keys) == list(KEYS)


def test_a_node_trains_on_video_and_names_its_decoder_once(
    video_dataset: Path, tiny_model_config, caplog: pytest.LogCaptureFixture, fresh_decoder
) -> None:
    from lerobot.datasets.factory import resolve_delta_timestamps

    from zk0.model.factory import build_policy, build_processors
    from zk0.training.local import TrainConfig, train_steps

    caplog.set_level(logging.INFO)
    meta = open_metadata(f"local:{video_dataset}")
    policy = build_policy(tiny_model_config, meta)
    preprocessor, _ = build_processors(policy.config, meta.stats, "cpu")
    delta = resolve_delta_timestamps(policy.config, meta)
    train = open_dataset(f"local:{video_dataset}", [0], delta)
    held_out = open_dataset(f"local:{video_dataset}", [1], delta)  # a second open logs nothing new
    result = train_steps(policy, preprocessor, train, TrainConfig(local_steps=2, batch_size=4))
    assert len(result.losses) == 2 and np.isfinite(result.losses).all()
    assert held_out[0][KEYS[1]].shape == (3, 48, 64)

    decoder = video.video_decoder()
    assert _decoder_lines(caplog) == [f"video decoder: {decoder.backend} ({decoder.detail})"]
    assert "Traceback" not in caplog.text and TORCHCODEC_TRACEBACK not in caplog.text


def test_without_ffmpeg_pyav_decodes_the_same_frames(
    video_dataset: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_decoder
) -> None:
    def missing_ffmpeg():  # what torchcodec raises where FFmpeg's libraries are missing
        raise RuntimeError(
            "Could not load libtorchcodec. Likely causes:\n  1. FFmpeg is not properly installed\n"
            f"[start of {TORCHCODEC_TRACEBACK}]\nFFmpeg version 7:\nTraceback (most recent call last):\n"
            "OSError: libavutil.so.59: cannot open shared object file\n[end of libtorchcodec loading traceback]."
        )

    caplog.set_level(logging.INFO)
    with monkeypatch.context() as patch:
        patch.setattr(video, "_load_torchcodec", missing_ffmpeg)
        fallback = open_dataset(f"local:{video_dataset}", [0, 1], None)
        frames = [fallback[i][KEYS[0]] for i in (0, 13)]
    assert video.video_decoder().backend == "pyav"
    (line,) = _decoder_lines(caplog)
    assert line.startswith("video decoder: pyav (torchcodec cannot load (Could not load libtorchcodec)")
    assert "apt-get install ffmpeg" in line and "\n" not in line
    assert "Traceback" not in caplog.text and TORCHCODEC_TRACEBACK not in caplog.text
    assert [r.levelno for r in caplog.records if r.getMessage() == line] == [logging.WARNING]

    video.video_decoder.cache_clear()
    if video.video_decoder().backend != "torchcodec":
        pytest.skip("torchcodec does not load here (no FFmpeg libraries): nothing to compare with")
    preferred = open_dataset(f"local:{video_dataset}", [0, 1], None)
    for i, frame in zip((0, 13), frames, strict=True):
        assert (preferred[i][KEYS[0]] - frame).abs().max() < 0.05
