"""Full-size SmolVLA training step on a GPU, through zk0's own code path.

Builds the SmolVLM2-500M-shaped SmolVLA offline with random frozen weights
(`zk0.model.backbone` preset, no Hub), a synthetic SO-100 dataset, zk0's processors and
dataset loader, then times `zk0.training.local.train_steps` (FedProx mu=0.01, lr 1e-4) at
several batch sizes and `evaluate_loss`. Prints a table; writes JSON to $OUT/gpu_step.json
(or --json).

    python -m bench.gpu_step                                  # full size on cuda
    python -m bench.gpu_step --preset tiny --device cpu       # quick check, no GPU
    python -m bench.gpu_step --num-workers 12 --cached        # + parallel loading, + compute only

Writing a LeRobotDataset needs PyAV even for image-only data (lerobot validates its video
codec), so on a machine without it write the dataset elsewhere first
(`--prepare-only --dataset DIR`) and pass `--dataset DIR` there.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

MiB = 1024 * 1024


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _mem(device: str) -> dict:
    if not device.startswith("cuda"):
        return {}
    return {
        "allocated_mib": torch.cuda.memory_allocated() / MiB,
        "max_allocated_mib": torch.cuda.max_memory_allocated() / MiB,
        "max_reserved_mib": torch.cuda.max_memory_reserved() / MiB,
    }


def _param_summary(policy) -> dict:
    total = Counter()
    trainable = Counter()
    for p in policy.parameters():
        key = f"{p.dtype}".replace("torch.", "") + f"@{p.device.type}"
        total[key] += p.numel()
        if p.requires_grad:
            trainable[key] += p.numel()
    return {"params": dict(total), "trainable_params": dict(trainable)}


def _loader_seconds(dataset, batch_size: int, batches: int, num_workers: int = 0) -> float:
    """Time to draw `batches` batches the way train_steps draws them (no model work)."""
    from zk0.training.local import _loader

    loader = _loader(dataset, batch_size, 0, shuffle=True, num_workers=num_workers)
    it = iter(loader)
    next(it)  # worker start-up is not per batch
    start = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            next(it)
        n += 1
    return (time.perf_counter() - start) / n


class CachedDataset(torch.utils.data.Dataset):
    """The first `n` items of a dataset held in memory: train_steps without data-loading cost."""

    def __init__(self, dataset, n: int, num_workers: int):
        n = min(n, len(dataset))
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, range(n)), batch_size=None, num_workers=num_workers
        )
        self.items = list(loader)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def bench_batch(
    policy, pre, dataset, device: str, batch: int, warmup: int, steps: int, num_workers: int = 0, label: str = ""
) -> dict:
    from zk0.training.local import TrainConfig, train_steps

    row: dict = {"batch_size": batch, "warmup_steps": warmup, "steps": steps, "num_workers": num_workers}
    if label:
        row["label"] = label
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        if warmup:
            _sync(device)
            t0 = time.perf_counter()
            res = train_steps(
                policy,
                pre,
                dataset,
                TrainConfig(
                    local_steps=warmup, batch_size=batch, lr=1e-4, proximal_mu=0.01, seed=1, num_workers=num_workers
                ),
            )
            _sync(device)
            row["warmup_wall_s"] = time.perf_counter() - t0
            row["warmup_losses"] = res.losses
        _sync(device)
        t0 = time.perf_counter()
        res = train_steps(
            policy,
            pre,
            dataset,
            TrainConfig(
                local_steps=steps, batch_size=batch, lr=1e-4, proximal_mu=0.01, seed=2, num_workers=num_workers
            ),
        )
        _sync(device)
        wall = time.perf_counter() - t0
    except torch.cuda.OutOfMemoryError as err:
        row["error"] = f"OOM: {str(err).splitlines()[0]}"
        row.update(_mem(device))
        return row
    row.update(
        wall_s=wall,
        loop_s=res.seconds,  # train_steps' own clock (excludes optimizer/anchor setup)
        s_per_step=wall / steps,
        samples=res.num_examples,
        samples_per_s=res.num_examples / wall,
        loss_first=res.losses[0],
        loss_last=res.losses[-1],
        data_s_per_batch=_loader_seconds(dataset, batch, min(steps, 3), num_workers),
    )
    row["compute_s_per_step"] = row["s_per_step"] - row["data_s_per_batch"]
    row.update(_mem(device))
    return row


def bench_eval(policy, pre, dataset, device: str, batch: int, max_batches: int) -> dict:
    from zk0.training.local import evaluate_loss

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    evaluate_loss(policy, pre, dataset, batch, seed=0, max_batches=1)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    loss, count = evaluate_loss(policy, pre, dataset, batch, seed=0, max_batches=max_batches)
    _sync(device)
    wall = time.perf_counter() - t0
    return {
        "batch_size": batch,
        "samples": count,
        "loss": loss,
        "wall_s": wall,
        "samples_per_s": count / wall if wall else 0.0,
        **_mem(device),
    }


def ensure_dataset(args, workdir: Path) -> Path:
    """The synthetic dataset: --dataset if it already holds one, else written there (or in workdir).

    Writing needs PyAV (lerobot checks the video codec even for image-only datasets); reading
    an image-only dataset does not, so a machine without PyAV can use one written elsewhere.
    """
    from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset

    root = Path(args.dataset).resolve() if args.dataset else workdir / "ds"
    if (root / "meta" / "info.json").is_file():
        return root
    ds_cfg = SyntheticDatasetConfig(
        episodes=args.episodes, frames_per_episode=args.frames, image_height=args.height, image_width=args.width, seed=3
    )
    return write_synthetic_dataset(root, ds_cfg)


def build(args, workdir: Path, device: str):
    from lerobot.datasets.factory import resolve_delta_timestamps

    from zk0.data.loading import open_dataset, open_metadata
    from zk0.model.factory import ModelConfig, build_policy, build_processors

    times = {}
    t0 = time.perf_counter()
    root = ensure_dataset(args, workdir)
    meta = open_metadata(f"local:{root}")
    times["dataset_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model_cfg = ModelConfig(model=args.preset, device=device, cache_dir=workdir / "cache")
    policy = build_policy(model_cfg, meta)
    _sync(device)
    times["build_policy_s"] = time.perf_counter() - t0
    pre, _ = build_processors(policy.config, meta.stats, device)
    delta = resolve_delta_timestamps(policy.config, meta)
    dataset = open_dataset(f"local:{root}", list(range(meta.total_episodes)), delta)
    return policy, pre, dataset, times


def trainable_bytes(policy) -> dict:
    from zk0.model.weights import arrays_nbytes, get_trainable_arrays

    t0 = time.perf_counter()
    arrays = get_trainable_arrays(policy)
    out = {
        "trainable_tensors": len(arrays),
        "trainable_numel": int(sum(a.size for a in arrays.values())),
        "trainable_bytes": arrays_nbytes(arrays),
        "get_trainable_arrays_s": time.perf_counter() - t0,
    }
    del arrays
    return out


def run_device(
    args,
    device: str,
    batch_sizes: list[int],
    warmup: int,
    steps: int,
    workdir: Path,
    eval_batches: int,
    tf32_batch: int = 0,
    on_row=None,
    report: dict | None = None,
) -> dict:
    """Fill `report` (given, so a caller can save it while it grows) with one device's figures."""
    report = {} if report is None else report
    report["device"] = device
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        report["gpu"] = {
            "name": props.name,
            "total_mib": props.total_memory / MiB,
            "sm_count": props.multi_processor_count,
        }
        torch.cuda.reset_peak_memory_stats()
    policy, pre, dataset, times = build(args, workdir, device)
    report.update(times)
    report["dataset_frames"] = len(dataset)
    report["after_build"] = _mem(device)
    report.update(_param_summary(policy))
    report.update(trainable_bytes(policy))
    cfg = policy.config
    report["policy_config"] = {
        k: getattr(cfg, k, None)
        for k in (
            "chunk_size",
            "n_action_steps",
            "num_vlm_layers",
            "num_expert_layers",
            "tokenizer_max_length",
            "resize_imgs_with_padding",
            "train_expert_only",
            "freeze_vision_encoder",
            "num_steps",
        )
    }
    report["train"] = []
    for batch in batch_sizes:
        row = bench_batch(policy, pre, dataset, device, batch, warmup, steps, args.num_workers)
        report["train"].append(row)
        _print_row(row)
        if on_row:
            on_row()
    report["eval"] = bench_eval(policy, pre, dataset, device, args.eval_batch, eval_batches)
    print(f"eval: {json.dumps(_round(report['eval']))}", flush=True)
    if on_row:
        on_row()
    if args.cached:
        t0 = time.perf_counter()
        cached = CachedDataset(dataset, 2 * max(batch_sizes), max(args.num_workers, 8))
        report["cache_fill_s"] = time.perf_counter() - t0
        report["train_cached"] = []
        for batch in batch_sizes:
            row = bench_batch(policy, pre, cached, device, batch, warmup, steps, 0, label="cached")
            report["train_cached"].append(row)
            _print_row(row)
            if on_row:
                on_row()
        report["eval_cached"] = bench_eval(policy, pre, cached, device, args.eval_batch, eval_batches)
        print(f"eval (cached): {json.dumps(_round(report['eval_cached']))}", flush=True)
        del cached
    if tf32_batch and device.startswith("cuda"):
        previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high")  # TF32 tensor cores for fp32 matmuls
        try:
            row = bench_batch(policy, pre, dataset, device, tf32_batch, warmup, steps, args.num_workers)
        finally:
            torch.set_float32_matmul_precision(previous)
        row["tf32"] = True
        report["train_tf32"] = row
        print("TF32:", end=" ")
        _print_row(row)
        if on_row:
            on_row()
    del policy, pre, dataset
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return report


def _round(obj):
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v) for v in obj]
    return obj


def _print_row(row: dict) -> None:
    if "error" in row:
        print(f"batch {row['batch_size']}: {row['error']}", flush=True)
        return
    print(
        f"{row.get('label', '')} batch {row['batch_size']:>3}: {row['s_per_step']:.4f} s/step  "
        f"{row['samples_per_s']:8.1f} samples/s  "
        f"data {row['data_s_per_batch']:.4f} s/batch  peak {row.get('max_allocated_mib', 0):9.0f} MiB  "
        f"loss {row['loss_first']:.3f}->{row['loss_last']:.3f}",
        flush=True,
    )


def print_table(report: dict) -> None:
    for dev in report["runs"]:
        gpu = dev.get("gpu", {}).get("name", platform.processor() or "cpu")
        print(f"\n## SmolVLA ({report['args']['preset']}) train_steps on {dev['device']} ({gpu})")
        print(
            f"build_policy {dev['build_policy_s']:.1f} s; trainable {dev['trainable_numel']:,} params in "
            f"{dev['trainable_tensors']} tensors = {dev['trainable_bytes'] / MiB:.1f} MiB fp32 "
            f"(get_trainable_arrays {dev['get_trainable_arrays_s']:.2f} s)"
        )
        if dev.get("after_build"):
            print(f"GPU memory after build: {dev['after_build']['allocated_mib']:.0f} MiB")
        print(
            f"{'batch':>6}{'s/step':>10}{'samples/s':>11}{'data s/b':>10}{'compute s':>11}"
            f"{'peak alloc MiB':>16}{'peak resv MiB':>15}"
        )
        rows = dev["train"] + dev.get("train_cached", []) + ([dev["train_tf32"]] if "train_tf32" in dev else [])
        for i, row in enumerate(rows):
            if row.get("label") == "cached" and (i == 0 or rows[i - 1].get("label") != "cached"):
                print(
                    f"  compute only: the same loop over {2 * max(r['batch_size'] for r in rows)} items held in memory:"
                )
            if row.get("tf32"):
                print("  with TF32 matmuls (torch.set_float32_matmul_precision('high'), not zk0's default):")
            if "error" in row:
                print(f"{row['batch_size']:>6}  {row['error']}")
                continue
            print(
                f"{row['batch_size']:>6}{row['s_per_step']:>10.4f}{row['samples_per_s']:>11.1f}"
                f"{row['data_s_per_batch']:>10.4f}{row['compute_s_per_step']:>11.4f}"
                f"{row.get('max_allocated_mib', float('nan')):>16.0f}{row.get('max_reserved_mib', float('nan')):>15.0f}"
            )
        if dev["train"]:
            print(f"  (zk0 DataLoader num_workers={dev['train'][0].get('num_workers', 0)})")
        ev = dev["eval"]
        print(
            f"evaluate_loss: batch {ev['batch_size']}, {ev['samples']} samples in {ev['wall_s']:.3f} s "
            f"({ev['samples_per_s']:.1f} samples/s), loss {ev['loss']:.4f}"
        )


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="smolvlm2-500m", help="backbone preset: smolvlm2-500m or tiny")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-sizes", default="8,32", help="comma-separated")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--eval-batches", type=int, default=5)
    p.add_argument(
        "--cpu-steps",
        type=int,
        default=0,
        help="also time this many steps on CPU (after one warm-up step), batch = first batch size",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="synthetic dataset dir: used if it holds one, else written there (default: a temp dir)",
    )
    p.add_argument("--prepare-only", action="store_true", help="write --dataset and exit")
    p.add_argument(
        "--tf32-batch",
        type=int,
        default=0,
        help="after the runs, repeat this batch size with TF32 matmuls allowed (not zk0's default)",
    )
    p.add_argument("--num-workers", type=int, default=0, help="TrainConfig.num_workers (zk0's default is 0)")
    p.add_argument(
        "--cached",
        action="store_true",
        help="also time the loop over items preloaded in memory (GPU compute without data loading)",
    )
    p.add_argument("--workdir", default=None)
    p.add_argument("--json", default=None, help="output path (default $OUT/gpu_step.json when OUT is set)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    if args.prepare_only:
        if not args.dataset:
            print("--prepare-only needs --dataset", file=sys.stderr)
            return 2
        print(f"dataset at {ensure_dataset(args, Path(args.dataset).parent)}")
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available; use --device cpu", file=sys.stderr)
        return 2
    import lerobot
    import transformers

    report = {
        "args": vars(args),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "lerobot": getattr(lerobot, "__version__", "?"),
            "cuda": torch.version.cuda,
        },
        "runs": [],
    }
    print(f"versions: {report['versions']}", flush=True)
    out = args.json or (Path(os.environ["OUT"]) / "gpu_step.json" if os.environ.get("OUT") else None)

    def save() -> None:  # after every row, so a run cut short still leaves its figures
        if out:
            Path(out).write_text(json.dumps(_round(report), indent=2, default=str))

    with tempfile.TemporaryDirectory(prefix="zk0-gpu-step-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        plan = [(args.device, batch_sizes, args.warmup, args.steps, args.eval_batches, args.tf32_batch)]
        if args.cpu_steps and args.device != "cpu":
            plan.append(("cpu", batch_sizes[:1], 1, args.cpu_steps, 1, 0))
        for i, (device, sizes, warmup, steps, eval_batches, tf32) in enumerate(plan):
            print(f"\n# {device}: batch sizes {sizes}, {warmup} warm-up + {steps} timed steps", flush=True)
            run: dict = {}
            report["runs"].append(run)
            run_device(
                args, device, sizes, warmup, steps, workdir / str(i), eval_batches, tf32, on_row=save, report=run
            )
            save()
    print_table(report)
    save()
    if out:
        print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
