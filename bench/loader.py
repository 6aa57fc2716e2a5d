"""Issue-15 figures: the data loader alone. Samples per second and frames decoded per sample
for zk0's loader (`open_dataset` + `zk0.training.local._loader`) against a plain lerobot
LeRobotDataset and DataLoader built as `lerobot-train` builds them (`make_dataset`, its
EpisodeAwareSampler and worker options), on image and video synthetic SO-100 datasets, with
SmolVLA's offsets (current frame, 50-action chunk).

    python -m bench loader
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

CHUNK = 50  # SmolVLA's default chunk_size
SIZE = {"image_height": 96, "image_width": 128}  # small enough to write quickly on 2 cores
KINDS = ("image", "video")


def write_datasets(workdir: Path, episodes: int = 4, frames: int = 50) -> dict[str, Path]:
    """An image and a video dataset with lerobot-record's two cameras; same content otherwise."""
    from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset

    shape = {"episodes": episodes, "frames_per_episode": frames, "seed": 4, **SIZE}
    return {
        kind: write_synthetic_dataset(workdir / kind, SyntheticDatasetConfig.recording(video=kind == "video", **shape))
        for kind in KINDS
    }


def lerobot_dataset(root: Path, policy_cfg, episodes: list[int] | None = None):
    """The dataset `lerobot-train --dataset.root=ROOT` makes for `policy_cfg` (uint8 video frames)."""
    from lerobot.configs.default import DatasetConfig
    from lerobot.configs.train import TrainPipelineConfig
    from lerobot.datasets.factory import make_dataset

    from zk0.data.loading import hub_off
    from zk0.data.video import video_decoder

    dataset_cfg = DatasetConfig(
        repo_id=f"local/{root.name}", root=str(root), episodes=episodes, video_backend=video_decoder().backend
    )
    with hub_off():
        return make_dataset(TrainPipelineConfig(dataset=dataset_cfg, policy=policy_cfg))


def lerobot_loader(dataset, batch_size: int, num_workers: int, seed: int = 0) -> torch.utils.data.DataLoader:
    """The DataLoader `lerobot-train` builds (its sampler, prefetch 4 and persistent workers)."""
    from lerobot.datasets import EpisodeAwareSampler

    sampler = EpisodeAwareSampler(
        dataset.meta.episodes["dataset_from_index"],
        dataset.meta.episodes["dataset_to_index"],
        episode_indices_to_use=dataset.episodes,
        shuffle=True,
        seed=seed,
        absolute_to_relative_idx=dataset.absolute_to_relative_idx,
    )
    workers = num_workers > 0
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
        prefetch_factor=4 if workers else None,
        persistent_workers=workers,
    )


def as_float_frames(batch: dict, camera_keys) -> dict:
    """What `lerobot-train` does to each batch before its preprocessor (uint8 video frames)."""
    for key in camera_keys:
        if key in batch and batch[key].dtype == torch.uint8:
            batch[key] = batch[key].to(dtype=torch.float32) / 255.0
    return batch


@contextlib.contextmanager
def decode_counter() -> Iterator[dict[str, int]]:
    """Count the image and video frames lerobot's decoders decode in this process."""
    import datasets.features.image as hf_image
    import lerobot.datasets.dataset_reader as reader

    counts = {"frames": 0}
    decode_image, decode_video = hf_image.Image.decode_example, reader.decode_video_frames

    def count_image(self, *args, **kwargs):
        counts["frames"] += 1
        return decode_image(self, *args, **kwargs)

    def count_video(path, timestamps, *args, **kwargs):
        counts["frames"] += len(timestamps)
        return decode_video(path, timestamps, *args, **kwargs)

    hf_image.Image.decode_example, reader.decode_video_frames = count_image, count_video
    try:
        yield counts
    finally:
        hf_image.Image.decode_example, reader.decode_video_frames = decode_image, decode_video


def frames_per_sample(dataset, samples: int = 20) -> float:
    with decode_counter() as counts:
        for i in range(samples):
            dataset[(i * 7) % len(dataset)]
    return counts["frames"] / samples


def samples_per_second(loader, camera_keys, batches: int) -> float:
    """Batches after the first (worker start-up and first decodes are not the steady state)."""
    stream = iter(loader)
    next(stream)
    started, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            batch = next(stream)
        except StopIteration:  # a short epoch: carry on into the next, as training does
            stream = iter(loader)
            batch = next(stream)
        n += len(as_float_frames(batch, camera_keys)["action"])
    return n / (time.perf_counter() - started)


def compare(root: Path, batch: int, batches: int, workers: int, repeats: int) -> dict[str, float]:
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    from zk0.data.loading import open_dataset, open_metadata
    from zk0.training.local import _loader

    meta = open_metadata(f"local:{root}")
    policy_cfg = SmolVLAConfig(chunk_size=CHUNK, n_action_steps=CHUNK, device="cpu")
    episodes = list(range(meta.total_episodes))
    ours = open_dataset(f"local:{root}", episodes, resolve_delta_timestamps(policy_cfg, meta))
    plain = lerobot_dataset(root, policy_cfg, episodes)
    row = {"zk0_frames": frames_per_sample(ours), "lerobot_frames": frames_per_sample(plain)}
    zk0_rates, lerobot_rates = [], []
    for _ in range(repeats):  # interleaved, so machine noise hits both alike
        lerobot_rates.append(samples_per_second(lerobot_loader(plain, batch, workers), meta.camera_keys, batches))
        zk0_rates.append(samples_per_second(_loader(ours, batch, 0, True, workers), meta.camera_keys, batches))
    row["zk0"], row["lerobot"] = statistics.median(zk0_rates), statistics.median(lerobot_rates)
    return row


def run(batch: int = 8, batches: int = 12, repeats: int = 3) -> None:
    with tempfile.TemporaryDirectory(prefix="zk0-bench-loader-") as tmp:
        started = time.perf_counter()
        roots = write_datasets(Path(tmp))
        print(
            f"\n## Data loader alone (SmolVLA offsets: current frame, {CHUNK}-action chunk; two cameras "
            f"{SIZE['image_height']}x{SIZE['image_width']}; batch {batch}, {batches} batches, median of {repeats};"
            f" datasets written in {time.perf_counter() - started:.0f}s)"
        )
        print(
            f"{'dataset':<8}{'workers':>8}{'frames/sample zk0':>19}{'lerobot':>9}"
            f"{'zk0 samples/s':>15}{'lerobot':>9}{'ratio':>7}"
        )
        for kind, root in roots.items():
            for workers in (0, 2):
                row = compare(root, batch, batches, workers, repeats)
                print(
                    f"{kind:<8}{workers:>8}{row['zk0_frames']:>19.1f}{row['lerobot_frames']:>9.1f}"
                    f"{row['zk0']:>15.1f}{row['lerobot']:>9.1f}{row['zk0'] / row['lerobot']:>7.2f}"
                )
