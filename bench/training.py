"""Issue-2 figures: bytes per client per round, client training throughput against a plain
lerobot loop (lerobot's dataset, loader and update_policy; image and video datasets), and
server aggregation peak memory for 2 vs 8 full-size updates."""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
import tracemalloc
from collections import OrderedDict
from pathlib import Path

import numpy as np

MiB = 1024 * 1024


def _synthetic_meta(root: Path):
    from zk0.data.loading import open_metadata
    from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset

    write_synthetic_dataset(root, SyntheticDatasetConfig(episodes=6, frames_per_episode=40, seed=3))
    return open_metadata(f"local:{root}")


def weight_bytes(workdir: Path, meta) -> dict[str, OrderedDict]:
    """Trainable vs whole state_dict, and what an ArrayRecord of the trainable set weighs."""
    from zk0.model.factory import ModelConfig, build_policy
    from zk0.model.weights import arrays_nbytes, get_trainable_arrays, to_array_record

    shapes = {}
    print("\n## Bytes of trainable weights sent per client per round")
    print(f"{'model':<15}{'trainable':>12}{'tensors':>9}{'fp32 MiB':>11}{'record MiB':>12}{'state_dict MiB':>16}")
    for preset in ("tiny", "smolvlm2-500m"):
        started = time.perf_counter()
        policy = build_policy(ModelConfig(model=preset, device="cpu", cache_dir=workdir / "cache"), meta)
        arrays = get_trainable_arrays(policy)
        state = policy.state_dict()
        state_bytes = sum(t.numel() * t.element_size() for t in state.values())
        record_bytes = to_array_record(arrays).count_bytes()
        trainable = sum(a.size for a in arrays.values())
        print(
            f"{preset:<15}{trainable:>12,}{len(arrays):>9}{arrays_nbytes(arrays) / MiB:>11.1f}"
            f"{record_bytes / MiB:>12.1f}{state_bytes / MiB:>16.1f}   (built in {time.perf_counter() - started:.0f}s,"
            f" {len(state)} state tensors)"
        )
        shapes[preset] = OrderedDict((n, (a.shape, a.dtype)) for n, a in arrays.items())
        del policy, arrays, state
        gc.collect()
    return shapes


def _zk0_loop(policy, pre, dataset, steps, batch):
    from zk0.training.local import TrainConfig, train_steps

    result = train_steps(
        policy, pre, dataset, TrainConfig(local_steps=steps, batch_size=batch, lr=1e-4, proximal_mu=0.01)
    )
    return result.num_examples / result.seconds


def _lerobot_loop(policy, pre, dataset, steps, batch):
    """lerobot's own update_policy on lerobot's own dataset and DataLoader, driven as
    lerobot_train drives it (uint8 video frames to float before the preprocessor)."""
    import itertools

    from accelerate import Accelerator
    from lerobot.scripts.lerobot_train import update_policy
    from lerobot.utils.logging_utils import AverageMeter, MetricsTracker

    from .loader import as_float_frames, lerobot_loader

    accelerator = Accelerator(cpu=True)
    preset = policy.config.get_optimizer_preset()
    preset.lr = 1e-4
    optimizer = preset.build(policy.get_optim_params())
    loader = lerobot_loader(dataset, batch, num_workers=0)  # zk0's default too (pyproject)
    meters = {
        "loss": AverageMeter("loss"),
        "grad_norm": AverageMeter("grdn"),
        "lr": AverageMeter("lr"),
        "update_s": AverageMeter("updt_s"),
    }
    tracker = MetricsTracker(batch, len(dataset), 5, meters)
    policy.train()
    started = time.perf_counter()
    n = 0
    for raw in itertools.islice(itertools.chain.from_iterable(itertools.repeat(loader)), steps):
        item = pre(as_float_frames(raw, dataset.meta.camera_keys))
        tracker, _ = update_policy(tracker, policy, item, optimizer, preset.grad_clip_norm, accelerator)
        n += len(item["action"])
    return n / (time.perf_counter() - started)


def _video_root(workdir: Path) -> Path:
    from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset

    cfg = SyntheticDatasetConfig.recording(episodes=6, frames_per_episode=40, seed=3)
    return write_synthetic_dataset(workdir / "ds-video", cfg)


def throughput(workdir: Path, steps: int = 30, batch: int = 8, repeats: int = 3) -> None:
    """zk0's client loop against lerobot's, each on its own dataset and loader, on an image
    dataset (one camera) and a video one (lerobot-record's two cameras)."""
    from lerobot.datasets.factory import resolve_delta_timestamps

    from zk0.data.loading import open_dataset, open_metadata
    from zk0.model.factory import ModelConfig, build_policy, build_processors

    from .loader import lerobot_dataset

    cfg = ModelConfig(model="tiny", device="cpu", cache_dir=workdir / "cache")
    print(f"\n## Client training throughput (tiny SmolVLA, CPU, batch {batch}, {steps} steps, median of {repeats})")
    for kind, root in (("image", workdir / "ds"), ("video", _video_root(workdir))):
        meta = open_metadata(f"local:{root}")
        policy = build_policy(cfg, meta)
        pre, _ = build_processors(policy.config, meta.stats, "cpu")
        episodes = list(range(5))
        ours = open_dataset(f"local:{root}", episodes, resolve_delta_timestamps(policy.config, meta))
        plain = lerobot_dataset(root, policy.config, episodes)
        zk0_rates, lerobot_rates = [], []
        for _ in range(repeats):  # interleaved, so machine noise hits both alike
            lerobot_rates.append(_lerobot_loop(build_policy(cfg, meta), pre, plain, steps, batch))
            zk0_rates.append(_zk0_loop(build_policy(cfg, meta), pre, ours, steps, batch))
        zk0_rate, lerobot_rate = statistics.median(zk0_rates), statistics.median(lerobot_rates)
        print(f"{kind} dataset ({len(meta.camera_keys)} camera(s)):")
        print(f"  zk0 client loop (FedProx mu=0.01): {zk0_rate:8.1f} samples/s")
        print(f"  plain lerobot update_policy loop:  {lerobot_rate:8.1f} samples/s")
        print(f"  ratio zk0 / lerobot: {zk0_rate / lerobot_rate:.3f} (target >= 0.95)")
        del policy


def aggregation_memory(shapes: OrderedDict, clients: int) -> float:
    """Peak bytes allocated while `clients` full-size updates arrive and are aggregated."""
    from zk0.federation.strategy import ValidatedFedProx

    from .replies import fake_train_replies

    reference = OrderedDict((n, np.zeros(shape, dtype)) for n, (shape, dtype) in shapes.items())
    strategy = ValidatedFedProx(
        min_train_nodes=clients,
        min_available_nodes=clients,
        max_update_norm=1e12,
        max_train_examples=32,
        max_eval_examples=32,
    )  # what fake_train_replies sends
    gc.collect()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    strategy.aggregate_stream(1, fake_train_replies(reference, clients), reference)
    peak = tracemalloc.get_traced_memory()[1] - baseline
    tracemalloc.stop()
    return peak


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="zk0-bench-") as tmp:
        workdir = Path(tmp)
        meta = _synthetic_meta(workdir / "ds")
        shapes = weight_bytes(workdir, meta)
        throughput(workdir)
        full = shapes["smolvlm2-500m"]
        size = sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d in full.values())
        print(f"\n## Server aggregation peak memory (full-size trainable set, {size / MiB:.0f} MiB per update)")
        peaks = {n: aggregation_memory(full, n) for n in (2, 8)}
        for n, peak in peaks.items():
            print(f"{n} client updates: peak {peak / MiB:8.0f} MiB  ({peak / size:.2f} x one update)")
        print(f"ratio 8 / 2 clients: {peaks[8] / peaks[2]:.2f} (stays near 1: one update at a time)")
