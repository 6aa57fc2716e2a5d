"""Synthetic SO-100-style LeRobotDatasets (v3.0) with a learnable signal.

Each episode drives a 6-joint arm from a random start towards a random goal. The action is
the next joint position (as SO-100 teleoperation records it), so it follows from the state
and the goal; the camera shows a colour that encodes the goal. A policy can learn this, so
training loss falls measurably within a few steps.
"""

from __future__ import annotations

import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zk0.data.schema import ACTION_KEY, CAMERA_PREFIX, SO100_DOF, SO100_JOINTS, STATE_KEY

TASKS = ("pick up the red cube", "push the block to the left", "open the gripper and wave")


@dataclass(frozen=True)
class SyntheticDatasetConfig:
    """What `write_synthetic_dataset` writes; `seed` makes the content reproducible."""

    episodes: int = 8
    frames_per_episode: int = 40
    fps: int = 30
    image_height: int = 48
    image_width: int = 64
    camera: str = "front"
    seed: int = 0
    repo_id: str = "zk0/synthetic-so100"
    robot_type: str = "so100_follower"


def so100_features(cfg: SyntheticDatasetConfig) -> dict:
    joint_feature = {"dtype": "float32", "shape": (SO100_DOF,), "names": list(SO100_JOINTS)}
    return {
        STATE_KEY: dict(joint_feature),
        ACTION_KEY: dict(joint_feature),
        f"{CAMERA_PREFIX}{cfg.camera}": {
            "dtype": "image",
            "shape": (cfg.image_height, cfg.image_width, 3),
            "names": ["height", "width", "channels"],
        },
    }


def _episode(rng: np.random.Generator, cfg: SyntheticDatasetConfig, task_index: int):
    goal = rng.uniform(-1.0, 1.0, SO100_DOF).astype(np.float32)
    state = rng.uniform(-1.0, 1.0, SO100_DOF).astype(np.float32)
    colour = ((goal[:3] + 1.0) * 127.5).astype(np.uint8)
    # A task-dependent stripe so the language and the image both carry signal.
    stripe = slice(task_index * cfg.image_width // len(TASKS), (task_index + 1) * cfg.image_width // len(TASKS))
    for _ in range(cfg.frames_per_episode):
        next_state = state + 0.15 * (goal - state)
        image = np.empty((cfg.image_height, cfg.image_width, 3), dtype=np.uint8)
        image[:] = colour
        image[:, stripe] = 255 - colour
        noise = rng.integers(0, 8, image.shape, dtype=np.uint8)
        yield state.copy(), next_state.astype(np.float32), np.clip(image + noise, 0, 255).astype(np.uint8)
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

    rng = np.random.default_rng(cfg.seed)
    dataset = LeRobotDataset.create(
        repo_id=cfg.repo_id,
        fps=cfg.fps,
        features=so100_features(cfg),
        root=root,
        robot_type=cfg.robot_type,
        use_videos=False,
    )
    (root / MARKER).write_text(
        f"written by zk0 (zk0.data.synthetic), seed {cfg.seed}; zk0 dataset synth --overwrite may replace it\n"
    )
    camera_key = f"{CAMERA_PREFIX}{cfg.camera}"
    for episode in range(cfg.episodes):
        task_index = int(rng.integers(len(TASKS)))
        for state, action, image in _episode(rng, cfg, task_index):
            dataset.add_frame({STATE_KEY: state, ACTION_KEY: action, camera_key: image, "task": TASKS[task_index]})
        dataset.save_episode()
        del episode
    dataset.finalize()
    return root


def ensure_synthetic_dataset(root: Path, cfg: SyntheticDatasetConfig) -> Path:
    """`root` holding the synthetic dataset for `cfg`, written once (atomically) if absent."""
    import os
    import tempfile

    root = Path(root)
    if (root / "meta" / "info.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent)) / "dataset"
    write_synthetic_dataset(staging, cfg)
    try:
        os.replace(staging, root)
    except OSError:
        if not (root / "meta" / "info.json").is_file():  # lost a race only if the winner finished
            raise
    shutil.rmtree(staging.parent, ignore_errors=True)
    return root


SYNTHETIC_SCHEME = "synthetic:"


def materialize_uri(uri: str, cache_dir: Path) -> str:
    """Turn `synthetic:NAME` (simulation and tests) into a local dataset URI, generating the
    data once; any other URI is returned unchanged."""
    import hashlib

    if not uri.startswith(SYNTHETIC_SCHEME):
        return uri
    name = uri[len(SYNTHETIC_SCHEME) :]
    if not name or "/" in name:
        raise ValueError(f"{uri!r}: give a plain name after 'synthetic:', e.g. synthetic:eval-a")
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    root = ensure_synthetic_dataset(Path(cache_dir) / "synthetic" / name, SyntheticDatasetConfig(seed=seed))
    return f"local:{root}"
