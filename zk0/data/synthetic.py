"""Synthetic SO-100-style LeRobotDatasets (v3.0) with a learnable signal.

Each episode drives a 6-joint arm from a random start towards a random goal. The action is
the next joint position (as SO-100 teleoperation records it), so it follows from the state
and the goal; each camera shows a colour that encodes part of the goal. A policy can learn
this, so training loss falls measurably within a few steps.

Two variants: camera frames stored as images (one camera; the fast default of the tests) or,
with `SyntheticDatasetConfig.recording()`, as a recording made with `lerobot-record` looks:
`front` and `wrist` cameras stored as video, encoded by lerobot with its default encoder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zk0.data.schema import ACTION_KEY, CAMERA_PREFIX, SO100_DOF, SO100_JOINTS, STATE_KEY
from zk0.data.uri import SyntheticSpec

TASKS = ("pick up the red cube", "push the block to the left", "open the gripper and wave")


# The camera names of lerobot-record's SO-100/SO-101 examples (observation.images.<name>).
RECORDING_CAMERAS = ("front", "wrist")


@dataclass(frozen=True)
class SyntheticDatasetConfig:
    """What `write_synthetic_dataset` writes; `seed` makes the content reproducible."""

    episodes: int = 8
    frames_per_episode: int = 40
    fps: int = 30
    image_height: int = 48
    image_width: int = 64
    cameras: tuple[str, ...] = ("front",)
    video: bool = False  # True: cameras stored as video (lerobot's default codec), else as images
    seed: int = 0
    repo_id: str = "zk0/synthetic-so100"
    robot_type: str = "so100_follower"

    def __post_init__(self) -> None:
        if self.video and (self.image_height % 2 or self.image_width % 2):  # yuv420p halves the chroma planes
            raise ValueError(
                f"video frames need even sizes, not {self.image_height}x{self.image_width}: e.g. 48x64 or 480x640"
            )

    @classmethod
    def recording(cls, **overrides: Any) -> SyntheticDatasetConfig:
        """As lerobot-record stores an SO-100 session: front and wrist cameras, video, 30 fps."""
        return cls(**{"cameras": RECORDING_CAMERAS, "video": True, **overrides})


def parse_resolution(text: str) -> tuple[int, int]:
    """`HxW` (e.g. 480x640) as (height, width); a `ValueError` naming the expected form otherwise."""
    height, sep, width = text.strip().lower().partition("x")
    if not (sep and height.isdigit() and width.isdigit()) or int(height) < 16 or int(width) < 16:
        raise ValueError(f"resolution {text!r}: give HEIGHTxWIDTH in pixels, each at least 16, e.g. 48x64 or 480x640")
    return int(height), int(width)


def so100_features(cfg: SyntheticDatasetConfig) -> dict:
    joint_feature = {"dtype": "float32", "shape": (SO100_DOF,), "names": list(SO100_JOINTS)}
    camera_feature = {
        "dtype": "video" if cfg.video else "image",
        "shape": (cfg.image_height, cfg.image_width, 3),
        "names": ["height", "width", "channels"],
    }
    return {
        STATE_KEY: dict(joint_feature),
        ACTION_KEY: dict(joint_feature),
        **{f"{CAMERA_PREFIX}{camera}": dict(camera_feature) for camera in cfg.cameras},
    }


def _frame(rng: np.random.Generator, cfg: SyntheticDatasetConfig, colour: np.ndarray, stripe: slice) -> np.ndarray:
    image = np.empty((cfg.image_height, cfg.image_width, 3), dtype=np.uint8)
    image[:] = colour
    image[:, stripe] = 255 - colour
    noise = rng.integers(0, 8, image.shape, dtype=np.uint8)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _episode(rng: np.random.Generator, cfg: SyntheticDatasetConfig, task_index: int):
    goal = rng.uniform(-1.0, 1.0, SO100_DOF).astype(np.float32)
    state = rng.uniform(-1.0, 1.0, SO100_DOF).astype(np.float32)
    # Camera i shows joints 3i..3i+2 of the goal as a colour (wrapping for more cameras).
    colours = [((np.roll(goal, -3 * i)[:3] + 1.0) * 127.5).astype(np.uint8) for i in range(len(cfg.cameras))]
    # A task-dependent stripe so the language and the image both carry signal.
    stripe = slice(task_index * cfg.image_width // len(TASKS), (task_index + 1) * cfg.image_width // len(TASKS))
    for _ in range(cfg.frames_per_episode):
        next_state = state + 0.15 * (goal - state)
        images = [_frame(rng, cfg, colour, stripe) for colour in colours]
        yield state.copy(), next_state.astype(np.float32), images
        state = next_state.astype(np.float32)


MARKER = ".zk0-synthetic"  # in the root of every dataset written here: what --overwrite may delete


def is_synthetic_dataset(root: Path) -> bool:
    """Whether `root` is a dataset this module wrote (its marker is a regular file, not a link)."""
    try:
        return stat.S_ISREG((Path(root) / MARKER).lstat().st_mode)
    except OSError:
        return False


def _clear_for_overwrite(root: Path, overwrite: bool) -> None:
    """Make way for a new dataset at `root`; only a dataset zk0 made (or an empty folder) goes."""
    if root.is_symlink():
        raise FileExistsError(
            f"{root} is a symbolic link; zk0 will not write or delete through it: give the real directory"
        )
    if not root.exists():
        return
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
        return
    if not overwrite:
        raise FileExistsError(f"{root} already exists; pass overwrite=True (--overwrite) to replace it")
    if not root.is_dir() or not is_synthetic_dataset(root):
        raise FileExistsError(
            f"{root} is not a synthetic dataset zk0 made (no {MARKER} file in it), so --overwrite will not "
            "delete it: choose another directory, or remove this one yourself if you mean to"
        )
    shutil.rmtree(root)  # removes links inside, never what they point to


def write_synthetic_dataset(root: Path, cfg: SyntheticDatasetConfig | None = None, overwrite: bool = False) -> Path:
    """Write a synthetic SO-100 dataset at `root` and return it; refuse to clobber unless asked,
    and even then replace only a dataset written here (marked by `MARKER`)."""
    cfg = cfg or SyntheticDatasetConfig()
    root = Path(root)
    _clear_for_overwrite(root, overwrite)  # before lerobot loads: a refusal takes milliseconds
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from zk0.data.video import video_decoder

    if cfg.video:
        # SVT-AV1 (lerobot's default encoder) prints its settings for every episode and camera.
        os.environ.setdefault("SVT_LOG", "1")  # errors only
    rng = np.random.default_rng(cfg.seed)
    dataset = LeRobotDataset.create(
        repo_id=cfg.repo_id,
        fps=cfg.fps,
        features=so100_features(cfg),
        root=root,
        robot_type=cfg.robot_type,
        use_videos=cfg.video,
        # Frames go to the encoder as they come (lerobot-record's --dataset.streaming_encoding):
        # the same files, several times faster than writing PNGs and encoding them afterwards.
        streaming_encoding=cfg.video,
        video_backend=video_decoder().backend,  # else lerobot probes torchcodec itself, noisily
    )
    (root / MARKER).write_text(
        f"written by zk0 (zk0.data.synthetic), seed {cfg.seed}; zk0 dataset synth --overwrite may replace it\n"
    )
    camera_keys = [f"{CAMERA_PREFIX}{camera}" for camera in cfg.cameras]
    for _ in range(cfg.episodes):
        task_index = int(rng.integers(len(TASKS)))
        for state, action, images in _episode(rng, cfg, task_index):
            frame = {STATE_KEY: state, ACTION_KEY: action, "task": TASKS[task_index]}
            dataset.add_frame(frame | dict(zip(camera_keys, images, strict=True)))
        dataset.save_episode()
    dataset.finalize()
    return root


def ensure_synthetic_dataset(root: Path, cfg: SyntheticDatasetConfig) -> Path:
    """`root` holding the synthetic dataset for `cfg`, written once (atomically) if absent."""
    import tempfile

    root = Path(root)
    if (root / "meta" / "info.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent)) / "dataset"
    write_synthetic_dataset(staging, cfg)
    try:
        staging.replace(root)
    except OSError:
        if not (root / "meta" / "info.json").is_file():  # lost a race only if the winner finished
            raise
    shutil.rmtree(staging.parent, ignore_errors=True)
    return root


def synthetic_config(spec: SyntheticSpec) -> SyntheticDatasetConfig:
    """What a `synthetic:` URI generates: its options over this module's defaults; without a
    `seed` option, one derived from the name (so `synthetic:a` and `synthetic:b` differ)."""
    default = SyntheticDatasetConfig()
    return SyntheticDatasetConfig(
        seed=spec.seed if spec.seed is not None else int(hashlib.sha256(spec.name.encode()).hexdigest()[:8], 16),
        episodes=spec.episodes if spec.episodes is not None else default.episodes,
        frames_per_episode=spec.frames if spec.frames is not None else default.frames_per_episode,
        video=spec.video if spec.video is not None else default.video,
        cameras=spec.cameras if spec.cameras is not None else default.cameras,
    )


def materialize(spec: SyntheticSpec, cache_dir: Path) -> Path:
    """The local root of `spec`'s dataset under `cache_dir`, generated on first use. The folder
    name carries a digest of the full config: other options never reuse a stale copy."""
    cfg = synthetic_config(spec)
    digest = hashlib.sha256(repr(cfg).encode()).hexdigest()[:12]
    return ensure_synthetic_dataset(Path(cache_dir) / "synthetic" / f"{spec.name}-{digest}", cfg)
