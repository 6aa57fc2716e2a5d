"""Open a node's dataset from its URI, check it, and split its episodes into train and eval."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from zk0.data.schema import check_so100_schema
from zk0.data.uri import DatasetURI, DatasetURIError, parse_dataset_uri


@dataclass(frozen=True)
class EpisodeSplit:
    """Which episodes train and which evaluate; the same on every call for the same inputs."""

    train: list[int]
    eval: list[int]


def split_episodes(num_episodes: int, eval_fraction: float, seed: int) -> EpisodeSplit:
    """Hold out `eval_fraction` of the episodes (at least one each side when possible)."""
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval fraction {eval_fraction} must be in [0, 1)")
    episodes = list(range(num_episodes))
    random.Random(seed).shuffle(episodes)
    n_eval = round(num_episodes * eval_fraction)
    if eval_fraction > 0 and num_episodes >= 2:
        n_eval = min(max(n_eval, 1), num_episodes - 1)
    return EpisodeSplit(train=sorted(episodes[n_eval:]), eval=sorted(episodes[:n_eval]))


def _local_repo_id(path: Path) -> str:
    # lerobot wants a repo id even for a local root; it never leaves this process.
    return f"local/{path.name or 'dataset'}"


def precheck(uri: DatasetURI | str) -> DatasetURI:
    """The checks that need neither lerobot nor torch: a wrong path fails in milliseconds."""
    uri = parse_dataset_uri(uri) if isinstance(uri, str) else uri
    if uri.is_local:
        path = uri.path
        if not path.is_dir():
            raise DatasetURIError(
                f"dataset directory {path} does not exist: check the path in dataset-uri "
                "(and that it is mounted into the container, if the node runs in one)"
            )
        info = path / "meta" / "info.json"
        if not info.is_file():
            raise DatasetURIError(
                f"{path} is not a LeRobot dataset: {info} is missing. Point dataset-uri at the "
                "dataset root (the folder holding meta/, data/ and videos/)"
            )
        try:
            json.loads(info.read_text())
        except json.JSONDecodeError as err:
            raise DatasetURIError(f"{info} is not valid JSON ({err}); the dataset is damaged") from err
    return uri


def open_metadata(uri: DatasetURI | str):
    """Load the dataset metadata for `uri` and check it fits the SO-100/101 schema."""
    uri = precheck(uri)
    # lerobot (and torch) load only once the cheap checks have passed: a wrong path fails fast.
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    if uri.is_local:
        meta = LeRobotDatasetMetadata(_local_repo_id(uri.path), root=uri.path)
        name = str(uri.path)
    else:
        meta = LeRobotDatasetMetadata(uri.repo_id, revision=uri.revision)
        name = f"hf:{uri.repo_id}"
    tasks = list(meta.tasks.index) if meta.tasks is not None else []
    check_so100_schema(meta.features, meta.fps, tasks, name=name)
    return meta


def open_dataset(uri: DatasetURI | str, episodes: list[int], delta_timestamps: dict | None):
    """The LeRobotDataset restricted to `episodes`, with the policy's time offsets."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    uri = parse_dataset_uri(uri) if isinstance(uri, str) else uri
    if uri.is_local:
        return LeRobotDataset(
            _local_repo_id(uri.path), root=uri.path, episodes=episodes, delta_timestamps=delta_timestamps
        )
    return LeRobotDataset(uri.repo_id, revision=uri.revision, episodes=episodes, delta_timestamps=delta_timestamps)
