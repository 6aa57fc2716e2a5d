"""`zk0 dataset convert`: a LeRobot v2.1 recording (two video cameras, as lerobot-record wrote
them before v3.0) becomes a v3.0 dataset that lerobot loads and zk0's check passes, with
lerobot's own converter, offline, and the original left byte for byte as it was.

The v2.1 dataset is written here from the synthetic generator's frames, in the layout
lerobot's converter reads: data/chunk-000/episode_000000.parquet, one mp4 per episode and
camera, meta/info.json, episodes.jsonl, tasks.jsonl and episodes_stats.jsonl."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from zk0.data.schema import ACTION_KEY, CAMERA_PREFIX, SO100_JOINTS, STATE_KEY
from zk0.data.synthetic import TASKS, SyntheticDatasetConfig, _episode

CFG = SyntheticDatasetConfig.recording(episodes=2, frames_per_episode=10, seed=5)
CAMERAS = [f"{CAMERA_PREFIX}{camera}" for camera in CFG.cameras]
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def _stats(values: np.ndarray, image: bool = False) -> dict[str, list]:
    count = [len(values)]
    if image:  # (frames, H, W, 3) uint8 -> per channel in [0, 1], shaped (3, 1, 1) as lerobot keeps them
        channels = values.transpose(3, 0, 1, 2).reshape(3, -1) / 255.0
        stats = {k: getattr(np, k)(channels, axis=1).reshape(3, 1, 1) for k in ("min", "max", "mean", "std")}
    else:
        rows = values.reshape(len(values), -1).astype(np.float64)
        stats = {k: getattr(np, k)(rows, axis=0) for k in ("min", "max", "mean", "std")}
    return {**{k: v.tolist() for k, v in stats.items()}, "count": count}


def _write_mp4(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libsvtav1", rate=fps, options={"g": "2", "crf": "30", "preset": "12"})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def write_v21_dataset(root: Path, cfg: SyntheticDatasetConfig = CFG) -> Path:
    """A LeRobot v2.1 dataset of `cfg`'s synthetic episodes, cameras as video."""
    import pandas as pd

    rng = np.random.default_rng(cfg.seed)
    episodes, episode_stats, index = [], [], 0
    task_indices: dict[str, int] = {}  # numbered as they first appear, as lerobot numbers them
    for episode_index in range(cfg.episodes):
        task = TASKS[int(rng.integers(len(TASKS)))]
        task_index = task_indices.setdefault(task, len(task_indices))
        states, actions, images = zip(*_episode(rng, cfg, TASKS.index(task)), strict=True)
        n = len(states)
        columns = {
            STATE_KEY: np.stack(states),
            ACTION_KEY: np.stack(actions),
            "timestamp": np.arange(n, dtype=np.float32) / cfg.fps,
            "frame_index": np.arange(n),
            "episode_index": np.full(n, episode_index),
            "index": np.arange(index, index + n),
            "task_index": np.full(n, task_index),
        }
        frame = pd.DataFrame({k: list(v) if v.ndim > 1 else v for k, v in columns.items()})
        data = root / f"data/chunk-000/episode_{episode_index:06d}.parquet"
        data.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(data, index=False)
        stats = {k: _stats(v) for k, v in columns.items()}
        for camera_index, key in enumerate(CAMERAS):
            frames = [per_camera[camera_index] for per_camera in images]
            _write_mp4(root / f"videos/chunk-000/{key}/episode_{episode_index:06d}.mp4", frames, cfg.fps)
            stats[key] = _stats(np.stack(frames), image=True)
        episodes.append({"episode_index": episode_index, "tasks": [task], "length": n})
        episode_stats.append({"episode_index": episode_index, "stats": stats})
        index += n
    joint = {"dtype": "float32", "shape": [len(SO100_JOINTS)], "names": list(SO100_JOINTS)}
    video_info = {"video.fps": float(cfg.fps), "video.height": cfg.image_height, "video.width": cfg.image_width}
    video_info |= {"video.channels": 3, "video.codec": "av1", "video.pix_fmt": "yuv420p", "has_audio": False}
    camera = {"dtype": "video", "shape": [cfg.image_height, cfg.image_width, 3]}
    camera |= {"names": ["height", "width", "channels"], "info": video_info | {"video.is_depth_map": False}}
    scalar = {"shape": [1], "names": None}
    features = {STATE_KEY: joint, ACTION_KEY: joint, **dict.fromkeys(CAMERAS, camera)}
    features |= {"timestamp": {"dtype": "float32", **scalar}}
    features |= {k: {"dtype": "int64", **scalar} for k in INDEX_COLUMNS[1:]}
    info = {
        "codebase_version": "v2.1",
        "robot_type": cfg.robot_type,
        "total_episodes": cfg.episodes,
        "total_frames": index,
        "total_tasks": len(task_indices),
        "total_videos": cfg.episodes * len(CAMERAS),
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": cfg.fps,
        "splits": {"train": f"0:{cfg.episodes}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features,
    }
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=2))

    def jsonl(name: str, rows: list[dict]) -> None:
        (root / "meta" / name).write_text("".join(json.dumps(row) + "\n" for row in rows))

    jsonl("episodes.jsonl", episodes)
    jsonl("tasks.jsonl", [{"task_index": i, "task": t} for t, i in task_indices.items()])
    jsonl("episodes_stats.jsonl", episode_stats)
    return root


def _fingerprint(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def v21_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_v21_dataset(tmp_path_factory.mktemp("v21") / "so100-recording")


@pytest.fixture
def no_hub(monkeypatch) -> list[object]:
    """Every connection attempt, recorded and refused; the Hub's offline switch turned off."""
    from huggingface_hub import constants

    connects: list[object] = []

    def refuse(sock, address):
        connects.append(address)
        raise ConnectionRefusedError("the test allows no network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return connects


def test_check_names_the_v21_layout_and_the_command(v21_dataset: Path) -> None:
    from zk0.data.loading import precheck
    from zk0.data.uri import DatasetURIError

    with pytest.raises(DatasetURIError, match=r"v2\.1 dataset") as err:
        precheck(f"local:{v21_dataset}")
    assert f"`zk0 dataset convert local:{v21_dataset}`" in str(err.value)
    assert "meta/episodes.jsonl" in str(err.value)


def test_convert_writes_a_checked_v30_copy_offline(v21_dataset: Path, tmp_path: Path, no_hub) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from typer.testing import CliRunner

    from zk0.cli import app

    before = _fingerprint(v21_dataset)
    out = tmp_path / "converted"
    result = CliRunner().invoke(app, ["dataset", "convert", f"local:{v21_dataset}", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert f"ok: converted to LeRobot v3.0 at {out} (2 episodes, 20 frames)" in result.output
    assert "original is unchanged" in result.output
    assert _fingerprint(v21_dataset) == before
    assert no_hub == []
    assert not [p for p in tmp_path.iterdir() if p.name != "converted"]  # no staging left behind

    assert json.loads((out / "meta/info.json").read_text())["codebase_version"] == "v3.0"
    dataset = LeRobotDataset("local/converted", root=out, video_backend="pyav")
    assert dataset.num_episodes == 2 and dataset.num_frames == 20
    item = dataset[13]
    assert item[STATE_KEY].shape == (6,) and item["task"] in TASKS
    rng = np.random.default_rng(CFG.seed)  # the first frame, drawn again as write_v21_dataset drew it
    _, _, images = next(_episode(rng, CFG, int(rng.integers(len(TASKS)))))
    for index, key in enumerate(CAMERAS):
        frame = dataset[0][key]
        assert frame.shape == (3, CFG.image_height, CFG.image_width)
        # Lossy AV1 of a flat colour with a stripe: the mean colour survives the codec.
        expected = images[index].reshape(-1, 3).mean(axis=0) / 255
        assert np.allclose(frame.numpy().reshape(3, -1).mean(axis=1), expected, atol=0.08), key


def test_in_place_keeps_the_original_beside_the_result(v21_dataset: Path, tmp_path: Path, no_hub) -> None:
    from zk0.data.convert import ConvertConfig, ConvertError, convert_dataset

    root = tmp_path / "recording"
    shutil.copytree(v21_dataset, root)
    before = _fingerprint(root)
    with pytest.raises(ConvertError, match="give --output or --in-place, not both"):
        ConvertConfig.from_uri(f"local:{root}", output=tmp_path / "x", in_place=True)
    result = convert_dataset(ConvertConfig.from_uri(f"local:{root}", in_place=True))
    assert (result.root, result.original) == (root, tmp_path / "recording_old")
    assert _fingerprint(result.original) == before
    assert (result.episodes, result.frames) == (2, 20)
    assert json.loads((root / "meta/info.json").read_text())["codebase_version"] == "v3.0"
    assert no_hub == []
    # lerobot would delete a `<name>_old` it finds: refused before anything is written.
    again = shutil.copytree(v21_dataset, tmp_path / "again")
    (tmp_path / "again_old").mkdir()
    (tmp_path / "again_old" / "mine.txt").write_text("not lerobot's")
    with pytest.raises(ConvertError, match="again_old exists"):
        convert_dataset(ConvertConfig.from_uri(f"local:{again}", in_place=True))
    assert (tmp_path / "again_old" / "mine.txt").read_text() == "not lerobot's"
    assert _fingerprint(again) == _fingerprint(v21_dataset)
