"""The last round's training figures, handed from a ClientApp process to ``zk0-supernode``.

Each ClientApp task runs in its own short-lived process; the launcher that exports the node's
health metrics is another. The channel between them is one small JSON file, written atomically
(a temporary file renamed over the old one) into the private directory that the launcher names
in ``ZK0_NODE_REPORT_DIR`` (0700, under the launcher's own temporary directory) and read back
when Prometheus scrapes. No variable (simulation, plain ``flower-supernode``): nothing is written.

Only numbers go in and only known numeric fields come out: a report cannot carry a path, a
repo id or a hostname to the metrics, whatever a bundle writes. Standard library only, because
the ClientApp imports it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REPORT_DIR_ENV = "ZK0_NODE_REPORT_DIR"
TRAIN_REPORT = "last-train.json"
_MAX_BYTES = 4096  # a report is about 150 bytes; anything larger is not ours


@dataclass(frozen=True)
class TrainReport:
    """What the node's last training message did (never anything about the dataset's identity)."""

    server_round: int
    seconds: float
    samples_per_second: float
    examples: float
    finished_at: float  # unix seconds

    @classmethod
    def from_json(cls, text: str) -> TrainReport | None:
        """The report in ``text``, or None when it is not one (wrong fields, types, values)."""
        try:
            raw = json.loads(text)
        except ValueError:
            return None
        if not isinstance(raw, dict):
            return None
        values = {}
        for name in ("server_round", "seconds", "samples_per_second", "examples", "finished_at"):
            value = raw.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            if not math.isfinite(value) or value < 0:
                return None
            values[name] = value
        return cls(
            server_round=int(values["server_round"]),
            seconds=float(values["seconds"]),
            samples_per_second=float(values["samples_per_second"]),
            examples=float(values["examples"]),
            finished_at=float(values["finished_at"]),
        )


def report_dir(env: dict[str, str] | None = None) -> Path | None:
    """The directory the launcher gave this process, or None (no launcher is listening)."""
    named = (os.environ if env is None else env).get(REPORT_DIR_ENV, "")
    return Path(named) if named else None


def write_train_report(
    server_round: int,
    seconds: float,
    samples_per_second: float,
    examples: float,
    directory: Path | None = None,
) -> Path | None:
    """Record a finished training message for the launcher's metrics; returns the file or None.

    ``directory`` defaults to ``$ZK0_NODE_REPORT_DIR``. Never raises: the figures are for the
    operator's dashboard, and a full disk or a vanished directory must not fail the round.
    """
    directory = directory if directory is not None else report_dir()
    if directory is None:
        return None
    report = TrainReport(
        server_round=int(server_round),
        seconds=float(seconds),
        samples_per_second=float(samples_per_second),
        examples=float(examples),
        finished_at=time.time(),
    )
    if TrainReport.from_json(json.dumps(asdict(report))) is None:
        log.warning("not recording training figures that are not finite, non-negative numbers: %s", report)
        return None
    target = directory / TRAIN_REPORT
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".train-", suffix=".tmp")  # 0600
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(asdict(report), f)
            Path(tmp).replace(target)  # atomic: a reader sees the old report or the new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:
        log.warning("could not record the round's training figures for the node's metrics: %s", err)
        return None
    return target


def read_train_report(directory: Path) -> TrainReport | None:
    """The last report in ``directory``; None when there is none yet or it is unreadable."""
    try:
        with (directory / TRAIN_REPORT).open("rb") as f:
            data = f.read(_MAX_BYTES + 1)
    except OSError:
        return None
    if len(data) > _MAX_BYTES:
        return None
    return TrainReport.from_json(data.decode("utf-8", errors="replace"))
