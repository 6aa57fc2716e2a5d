"""Transfer encodings (`transfer` = fp32, bf16, int8-delta): bytes per node and round each
way, encode/decode time for the full-size trainable set against the upload time it saves,
and the model they give: a tiny in-process federation per encoding, same seeds."""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import RecordDict

from .inprocess import REPO, run_config, run_federation

MiB = 1024 * 1024
UPLINK_BITS_PER_S = 20e6  # a node's upload at 20 Mbit/s
GOALS_MIB = {"bf16": 191, "int8-delta": 96}  # full-size set, per direction
QUALITY: dict[str, Any] = {  # the tiny federation: pyproject defaults otherwise
    "num-server-rounds": 10,
    "local-steps": 10,
    "batch-size": 4,
    "checkpoint-every": 0,
    "server-eval-every": 1,
    "device": "cpu",
    "wandb-project": "",
}
PLOT = REPO / "outputs" / "bench-transfer-quality.png"


def serialized_bytes(record) -> int:
    """What Flower sends for an ArrayRecord: every object of its tree, deflated, once."""
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    return sum(len(obj.deflate()) for obj in get_all_nested_objects(record).values())


def trainable_shapes(preset: str, workdir: Path) -> OrderedDict[str, tuple[int, ...]]:
    from zk0.data.loading import open_metadata
    from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset
    from zk0.model.factory import ModelConfig, build_policy

    root = workdir / "ds"
    if not root.exists():
        write_synthetic_dataset(root, SyntheticDatasetConfig(episodes=2, frames_per_episode=20, seed=3))
    policy = build_policy(
        ModelConfig(model=preset, device="cpu", cache_dir=workdir / "cache"), open_metadata(f"local:{root}")
    )
    shapes = OrderedDict((n, tuple(p.shape)) for n, p in policy.named_parameters() if p.requires_grad)
    del policy
    gc.collect()
    return shapes


def _weights(shapes: OrderedDict[str, tuple[int, ...]], seed: int, std: float) -> OrderedDict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return OrderedDict((n, rng.standard_normal(s, dtype=np.float32) * np.float32(std)) for n, s in shapes.items())


def _round(shapes, mode: str):
    """One round's messages for `mode`: (downlink, reply content, trained weights)."""
    from zk0.federation.transfer import encode_global, encode_update

    weights = _weights(shapes, 0, 0.02)  # SmolVLA-like magnitudes
    sent = encode_global(weights, mode)
    deltas = _weights(shapes, 1, 1e-3)  # a round of local training
    trained = OrderedDict((n, v + deltas[n]) for n, v in sent.received.items())
    return sent, _content(encode_update(trained, sent.received, mode, RecordDict()))


def _content(records) -> RecordDict:
    """A reply's content holding `records`."""
    content = RecordDict()
    for name, record in records.items():
        content[name] = record
    return content


def byte_table(shapes_by_model: dict[str, OrderedDict]) -> None:
    from zk0.federation import protocol as wire

    print("\n## Bytes per node per round (ArrayRecords as Flower serializes them)")
    print(f"{'model':<15}{'transfer':<12}{'down MiB':>10}{'up MiB':>10}{'vs fp32':>9}  goal (full size)")
    for model, shapes in shapes_by_model.items():
        fp32_up = None
        for mode in wire.TRANSFERS:
            sent, reply = _round(shapes, mode)
            down = serialized_bytes(sent.record)
            up = sum(serialized_bytes(record) for record in reply.array_records.values())
            fp32_up = fp32_up or up
            goal = ""
            if model != "tiny" and mode in GOALS_MIB:
                limit = GOALS_MIB[mode]
                ok = max(down, up) / MiB <= limit if mode == wire.BF16 else up / MiB <= limit
                goal = f"{'<=' if ok else 'MISSED'} {limit} MiB"
            print(f"{model:<15}{mode:<12}{down / MiB:>10.2f}{up / MiB:>10.2f}{up / fp32_up:>9.3f}  {goal}")
            del sent, reply
            gc.collect()


def _timed(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def codec_times(shapes: OrderedDict) -> None:
    from zk0.federation import protocol as wire
    from zk0.federation.transfer import decode_global, decode_update, encode_global, encode_update

    weights = _weights(shapes, 0, 0.02)
    fp32_bytes = sum(a.nbytes for a in weights.values())
    print(f"\n## Encode and decode per round, full-size set ({fp32_bytes / MiB:.0f} MiB fp32), CPU, best of 3")
    print(
        f"{'transfer':<12}{'server enc':>11}{'node dec':>10}{'node enc':>10}{'server dec':>11}{'total s':>9}"
        f"{'upload s':>10}{'saved s':>9}   (upload at {UPLINK_BITS_PER_S / 1e6:.0f} Mbit/s)"
    )
    fp32_up = None
    for mode in wire.TRANSFERS:
        t_enc_g, sent = _timed(partial(encode_global, weights, mode))
        t_dec_g, received = _timed(partial(decode_global, sent.record, mode))
        trained = OrderedDict((n, v + np.float32(1e-3)) for n, v in received.items())
        t_enc_u, records = _timed(partial(encode_update, trained, received, mode, RecordDict()))
        reply = _content(records)
        t_dec_u, _ = _timed(partial(decode_update, reply, sent.received, mode))
        up = sum(record.count_bytes() for record in reply.array_records.values())
        fp32_up = fp32_up or up  # fp32 comes first
        upload = up * 8 / UPLINK_BITS_PER_S
        saved = (fp32_up - up) * 8 / UPLINK_BITS_PER_S
        total = t_enc_g + t_dec_g + t_enc_u + t_dec_u
        print(
            f"{mode:<12}{t_enc_g * 1e3:>9.0f}ms{t_dec_g * 1e3:>8.0f}ms{t_enc_u * 1e3:>8.0f}ms{t_dec_u * 1e3:>9.0f}ms"
            f"{total:>9.2f}{upload:>10.1f}{saved:>9.1f}"
        )
        del sent, received, trained, records, reply
        gc.collect()


def update_error(shapes: OrderedDict) -> None:
    """How much of one round's update survives the trip: ||decoded - sent|| / ||sent||, per mode."""
    from zk0.federation import protocol as wire
    from zk0.federation.transfer import decode_update, encode_global, encode_update

    weights = _weights(shapes, 0, 0.02)  # SmolVLA-like magnitudes
    deltas = _weights(shapes, 1, 1e-3)  # one round of local training (Gaussian: no real update here)
    print("\n## Update reconstruction, full-size set, one round (synthetic update: Gaussian, std 1e-3)")
    print(f"{'transfer':<12}{'relative L2 error of the update':>32}")
    for mode in wire.TRANSFERS:
        sent = encode_global(weights, mode)
        trained = OrderedDict((n, v + deltas[n]) for n, v in sent.received.items())
        reply = _content(encode_update(trained, sent.received, mode, RecordDict()))
        decoded = decode_update(reply, sent.received, mode)
        err = sum(float(np.sum((decoded[n] - trained[n]).astype(np.float64) ** 2)) for n in trained)
        ref = sum(float(np.sum(deltas[n].astype(np.float64) ** 2)) for n in trained)
        print(f"{mode:<12}{(err / ref) ** 0.5:>32.2e}")
        del sent, trained, reply, decoded
        gc.collect()


@contextmanager
def _nodes_built_once() -> Iterator[None]:
    """Each in-process node builds its policy and opens its data once, not per message: the
    build is the same in every mode, and the received weights replace the policy's anyway."""
    import zk0.client_app as client_app

    opened: dict[int, object] = {}
    original = client_app._open

    def open_once(context):
        if context.node_id not in opened:
            opened[context.node_id] = original(context)
        return opened[context.node_id]

    client_app._open = open_once
    try:
        yield
    finally:
        client_app._open = original


def quality(workdir: Path) -> dict[str, list[float]]:
    from zk0.federation import protocol as wire

    curves: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    for mode in wire.TRANSFERS:
        config = run_config(**QUALITY, transfer=mode, **{"output-dir": str(workdir / "runs"), "run-name": mode})
        started = time.perf_counter()
        with _nodes_built_once():
            run_federation(config, nodes=2)
        seconds[mode] = time.perf_counter() - started
        metrics = workdir / "runs" / mode / "metrics"
        curves[mode] = [
            json.loads((metrics / f"round_{r}.json").read_text())["server-eval"]["mean"]
            for r in range(config["num-server-rounds"] + 1)
        ]
    rounds, nodes = QUALITY["num-server-rounds"], 2
    print(f"\n## Model quality: tiny federation, {rounds} rounds, {nodes} nodes, same seeds, server-eval loss")
    print(f"{'round':<7}" + "".join(f"{mode:>12}" for mode in curves))
    for r in range(rounds + 1):
        print(f"{r:<7}" + "".join(f"{curve[r]:>12.4f}" for curve in curves.values()))
    base = curves[wire.FP32][-1]
    for mode, curve in curves.items():
        diff = (curve[-1] - base) / base * 100
        verdict = "" if mode == wire.FP32 else f"  ({'within' if abs(diff) <= 2 else 'OUTSIDE'} 2 %)"
        print(f"final {mode:<11}{curve[-1]:.4f}  {diff:+.2f} % vs fp32{verdict}   ({seconds[mode]:.0f}s)")
    return curves


def plot(curves: dict[str, list[float]], path: Path) -> None:
    """The loss curves as a PNG (PIL: matplotlib is not a dependency)."""
    from PIL import Image, ImageDraw

    width, height, margin = 640, 400, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    values = [v for curve in curves.values() for v in curve]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    rounds = len(next(iter(curves.values()))) - 1

    def xy(r: int, v: float) -> tuple[float, float]:
        x = margin + r / rounds * (width - 2 * margin)
        return x, height - margin - (v - low) / span * (height - 2 * margin)

    draw.rectangle((margin, margin, width - margin, height - margin), outline="black")
    for r in range(rounds + 1):
        draw.text((xy(r, low)[0] - 3, height - margin + 5), str(r), fill="black")
    for v in np.linspace(low, high, 5):
        draw.text((4, xy(0, v)[1] - 6), f"{v:.3f}", fill="black")
    draw.text((width // 2 - 100, 10), "server-eval loss per round (tiny, 2 nodes)", fill="black")
    draw.text((width // 2 - 10, height - 20), "round", fill="black")
    for i, (mode, curve) in enumerate(curves.items()):
        # Wide to narrow, so that curves on top of each other all stay visible.
        color, line = (("gray", 7), ("blue", 4), ("red", 1))[i % 3]
        draw.line([xy(r, v) for r, v in enumerate(curve)], fill=color, width=line)
        draw.text((width - margin - 90, margin + 8 + 14 * i), mode, fill=color)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    print(f"loss curves: {path}")


def run() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    with tempfile.TemporaryDirectory(prefix="zk0-bench-transfer-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("ZK0_CACHE_DIR", str(workdir / "cache"))
        shapes = {
            "tiny": trainable_shapes("tiny", workdir),
            "smolvlm2-500m": trainable_shapes("smolvlm2-500m", workdir),
        }
        byte_table(shapes)
        codec_times(shapes["smolvlm2-500m"])
        update_error(shapes["smolvlm2-500m"])
        plot(quality(workdir), PLOT)
