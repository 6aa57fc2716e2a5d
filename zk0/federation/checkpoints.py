"""Checkpoints the server writes: lerobot policy directories, one per round.

`outputs/<run>/checkpoints/round_<N>/` holds config.json + model.safetensors (loadable with
`SmolVLAPolicy.from_pretrained`) and the pre/post processor files lerobot's processor
loader reads. Resume takes the highest round and its trainable weights.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np

_ROUND_DIR = re.compile(r"^round_(\d+)$")
STATE_FILE = "zk0_state.json"


def checkpoint_dir(run_dir: Path, server_round: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"round_{server_round}"


def save_checkpoint(run_dir: Path, server_round: int, policy, preprocessor, postprocessor, state: dict) -> Path:
    """Write the round's checkpoint atomically (a crash never leaves a half directory)."""
    final = checkpoint_dir(run_dir, server_round)
    staging = final.with_name(f".{final.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    policy.save_pretrained(staging)
    preprocessor.save_pretrained(staging)
    postprocessor.save_pretrained(staging)
    (staging / STATE_FILE).write_text(json.dumps({"round": server_round, **state}, indent=2))
    if final.exists():
        shutil.rmtree(final)
    staging.replace(final)
    return final


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    """(round, dir) of the newest complete checkpoint of the run, or None."""
    root = Path(run_dir) / "checkpoints"
    found = []
    for child in root.iterdir() if root.is_dir() else []:
        match = _ROUND_DIR.match(child.name)
        if match and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return max(found) if found else None


def load_trainable(checkpoint: Path, names: list[str]) -> OrderedDict[str, np.ndarray]:
    """The trainable weights `names` from a checkpoint's model.safetensors, in that order."""
    from safetensors.numpy import load_file

    tensors = load_file(str(Path(checkpoint) / "model.safetensors"))
    missing = [n for n in names if n not in tensors]
    if missing:
        raise KeyError(f"checkpoint {checkpoint} lacks weights {missing[:3]}: it is from another model")
    return OrderedDict((n, tensors[n].astype(np.float32)) for n in names)
