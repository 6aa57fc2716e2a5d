"""Round records: one JSON file per round on the server, and the same figures to wandb.

wandb runs online when WANDB_API_KEY is set and offline otherwise; an explicit WANDB_MODE
always wins. Offline runs land under the run directory for a later `wandb sync`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def wandb_mode() -> str:
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


class RoundRecorder:
    """Collects what happened in a round and writes it out when the round closes."""

    def __init__(self, run_dir: Path, run_name: str, project: str, config: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.metrics_dir = round_record_path(run_dir, 0).parent
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        self._wandb = None
        mode: Any = wandb_mode()  # WANDB_MODE as given (wandb checks the value; its type is narrower)
        if mode != "disabled" and project:
            import wandb

            self._wandb = wandb.init(
                project=project,
                name=run_name,
                id=run_name,
                resume="allow",
                mode=mode,
                dir=str(run_dir),
                config=config,
                settings=wandb.Settings(console="off", silent=True),
            )

    def write(self, server_round: int, record: dict[str, Any]) -> Path:
        path = round_record_path(self.run_dir, server_round)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"round": server_round, **record}, indent=2, sort_keys=True))
        tmp.replace(path)
        if self._wandb is not None:
            self._wandb.log(_flatten(record), step=server_round)
        return path

    def log_images(self, server_round: int, images: dict[str, Path]) -> None:
        """PNGs (`zk0.federation.plots`) to wandb at the round's step, when wandb is on."""
        if self._wandb is not None:
            import wandb

            self._wandb.log({key: wandb.Image(str(path)) for key, path in images.items()}, step=server_round)

    def close(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def round_record_path(run_dir: Path, server_round: int) -> Path:
    return Path(run_dir) / "metrics" / f"round_{server_round}.json"


def read_round_record(run_dir: Path, server_round: int) -> dict[str, Any]:
    """Round `server_round`'s record as RoundRecorder wrote it; {} when there is none."""
    try:
        return json.loads(round_record_path(run_dir, server_round).read_text())
    except FileNotFoundError:
        return {}


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = value
    return flat
