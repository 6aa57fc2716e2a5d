"""The ServerApp's round files, reduced to figures that are safe to export.

The ServerApp writes one JSON per round (`zk0.federation.metrics.RoundRecorder`) to
`<outputs>/<run>/metrics/round_<N>.json`, atomically. Those files are the durable record of a
run and the monitor's only source for round figures: the ServerApp process lives only as long
as its run, the files stay, and reading them needs no channel into that process.

Only numbers leave this module, with labels from fixed sets or checked patterns:
- a node's dataset label must look like the keyed hash a node makes (`ds-` + 16 hex digits,
  `zk0.privacy`), anything else becomes `invalid` (a node chooses what it sends);
- server eval datasets are keyed by the URI the admin configured (a local path or a Hub repo
  id): they become `eval-` + 12 hex digits of its SHA-256 (`zk0.privacy.server_eval_label`);
- rejection reasons are free text written by the server (with a node's weight names in some):
  they become one of `REJECTION_REASONS` (`rejection_reason`);
- a run name outside `[A-Za-z0-9._-]` is hashed too (the admin picks run names).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zk0.federation import protocol as wire
from zk0.privacy import LABEL_PREFIX, server_eval_label

log = logging.getLogger(__name__)

ROUND_FILE = re.compile(r"^round_(\d+)\.json$")
INVALID_LABEL = "invalid"
_NODE_LABEL = re.compile(rf"^{re.escape(LABEL_PREFIX)}[0-9a-f]{{16}}$")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_STEP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")  # the ServerApp's own `clock.lap` names
_MAX_FILE_BYTES = 16 * 1024 * 1024  # a round file is kilobytes; a larger one is not the ServerApp's

# Round sections with per-node replies -> the phase label of the metrics.
PHASES = {"train": "train", "client-eval": "evaluate"}
# Sections scoring weights on the nodes' held-out episodes -> the `weights` label: the weights a
# round started from (scored in the train message) or the round's aggregate (evaluate messages).
CLIENT_EVAL_SECTIONS = {"client-eval-start": "round-start", "client-eval": "round-end"}

# Why a reply was dropped, as a fixed set. The patterns follow the messages of
# zk0.federation.validation, .transfer and .strategy; a message they miss counts as "other"
# (tests/unit/test_server_metrics.py produces each message with the real functions). Messages
# that begin with a weight name (which a node chooses) are matched at their end only.
REJECTION_REASONS = (
    "duplicate-reply",
    "example-count",
    "weight-names",
    "weight-shape",
    "weight-dtype",
    "not-finite",
    "norm-bound",
    "encoding",
    "other",
)
_REASON_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(pattern, re.DOTALL))
    for reason, pattern in (
        ("duplicate-reply", r"^a second reply from this node in one round$"),
        ("example-count", r"^reply has no '[^']*' metric to weight it by$"),
        (
            "example-count",
            r"^'[^']*' is .*, (not a number|must be finite and positive|more than the \S+ the server asked for)$",
        ),
        ("weight-names", r"^weight names differ: missing \[.*\], unexpected \[.*\]$"),
        ("norm-bound", r"^update norm \S+ exceeds the bound \S+$"),
        ("not-finite", r"^update norm is \S+: the global weights are not finite$"),
        ("encoding", r"^reply carries no weights$"),
        ("encoding", r"^int8 weights without their '[^']*' in an \S+ run$"),
        ("encoding", r"^reply carries '[^']*', which a \S+ run does not send$"),
        ("encoding", r"^scales for weights the reply lacks: \[.*\]$"),
        ("not-finite", r": contains NaN or Inf$"),
        ("weight-dtype", r": dtype \S+, expected \S+$"),
        ("weight-shape", r": shape \(.*\), expected \(.*\)$"),
        ("encoding", r": unreadable array \(\w+\)$"),
        ("encoding", r": declares dtype \S+ but holds \S+$"),
        ("encoding", r": int8 values without a scale$"),
        ("encoding", r": scales of shape \(.*\), expected \(.*\)$"),
        ("encoding", r": scales must be finite and >= 0$"),
    )
)


def rejection_reason(message: object) -> str:
    """The category in `REJECTION_REASONS` of a rejection message from the round file."""
    text = str(message)
    for reason, pattern in _REASON_PATTERNS:
        if pattern.search(text):
            return reason
    return "other"


def node_label(value: object) -> str:
    """A node's dataset label as reported, if it has the shape of one; else `invalid`."""
    return value if isinstance(value, str) and _NODE_LABEL.match(value) else INVALID_LABEL


def run_label(run_name: str) -> str:
    """The run's directory name when it is plain, else a hash of it."""
    if _RUN_NAME.match(run_name):
        return run_name
    return "run-" + hashlib.sha256(run_name.encode()).hexdigest()[:12]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _section(record: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = record.get(key)
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class PhaseReplies:
    """Replies of one phase of one round: accepted, failed (error replies), rejected by reason."""

    accepted: int = 0
    failed: int = 0
    rejected: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundSummary:
    """The exportable figures of one round file."""

    server_round: int
    seconds: float | None = None
    step_seconds: Mapping[str, float] = field(default_factory=dict)
    bytes_per_client: float | None = None
    adopted: bool | None = None
    replies: Mapping[str, PhaseReplies] = field(default_factory=dict)  # phase -> replies
    train_loss: Mapping[str, float] = field(default_factory=dict)  # node label -> loss
    train_mean_loss: float | None = None
    client_eval_loss: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # weights -> label -> loss
    client_eval_mean_loss: Mapping[str, float] = field(default_factory=dict)  # weights -> loss
    server_eval_loss: Mapping[str, float] = field(default_factory=dict)  # eval label -> loss
    server_eval_mean_loss: float | None = None


def _replies(section: Mapping[str, Any]) -> PhaseReplies:
    rejected: dict[str, int] = defaultdict(int)
    entries = _section(section, "rejected")
    for entry in entries.values():
        rejected[rejection_reason(entry.get("reason", "") if isinstance(entry, Mapping) else "")] += 1
    failed = _number(section.get("failed"))
    return PhaseReplies(
        accepted=len(_section(section, "clients")),
        failed=int(failed) if failed is not None and failed >= 0 else 0,
        rejected=dict(rejected),
    )


def _loss_by_label(section: Mapping[str, Any], figure: str) -> dict[str, float]:
    """Per node label, the figure weighted by example counts, as `RoundReport.mean` weights it
    (two nodes may report one label: one series each would be a duplicate)."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for client in _section(section, "clients").values():
        if not isinstance(client, Mapping) or (value := _number(client.get(figure))) is None:
            continue
        weight = _number(client.get(wire.NUM_EXAMPLES))
        weight = weight if weight is not None and math.isfinite(weight) and weight > 0 else 1.0
        total = sums[node_label(client.get(wire.DATASET_LABEL))]
        total[0] += value * weight
        total[1] += weight
    return {label: weighted / weights for label, (weighted, weights) in sums.items()}


def summarize(record: Mapping[str, Any], server_round: int) -> RoundSummary:
    """What a round file says, in numbers and safe labels only."""
    steps = _section(record, "seconds-by-step")
    step_seconds = {
        name: value for name, raw in steps.items() if _STEP_NAME.match(name) and (value := _number(raw)) is not None
    }
    replies = {phase: _replies(_section(record, key)) for key, phase in PHASES.items() if key in record}
    client_eval_loss: dict[str, dict[str, float]] = {}
    client_eval_mean: dict[str, float] = {}
    for key, weights in CLIENT_EVAL_SECTIONS.items():
        if key in record:
            client_eval_loss[weights] = _loss_by_label(_section(record, key), wire.EVAL_LOSS)
            if (mean := _number(record.get(f"{key}-loss"))) is not None:
                client_eval_mean[weights] = mean
    server_eval = _section(record, "server-eval")
    adopted = _section(record, "train").get("adopted")
    return RoundSummary(
        server_round=server_round,
        seconds=_number(record.get("seconds")),
        step_seconds=step_seconds,
        bytes_per_client=_number(record.get("bytes-per-client")),
        adopted=adopted if isinstance(adopted, bool) else None,
        replies=replies,
        train_loss=_loss_by_label(_section(record, "train"), wire.TRAIN_LOSS) if "train" in record else {},
        train_mean_loss=_number(record.get("train-loss")),
        client_eval_loss=client_eval_loss,
        client_eval_mean_loss=client_eval_mean,
        server_eval_loss={
            server_eval_label(str(name)): value
            for name, raw in server_eval.items()
            if name != "mean" and (value := _number(raw)) is not None
        },
        server_eval_mean_loss=_number(server_eval.get("mean")),
    )


@dataclass(frozen=True)
class RoundFile:
    path: Path
    server_round: int
    mtime: float  # unix seconds
    stamp: tuple[int, int]  # (mtime_ns, size): a file rewritten in place is read again


def round_files(run_dir: Path) -> list[RoundFile]:
    """The run's round files, by round. Symbolic links are not followed."""
    found = []
    try:
        entries = list(os.scandir(Path(run_dir) / "metrics"))
    except OSError:
        return []
    for entry in entries:
        match = ROUND_FILE.match(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        try:
            stat = entry.stat(follow_symlinks=False)
        except OSError:  # replaced between the listing and now
            continue
        found.append(RoundFile(Path(entry.path), int(match.group(1)), stat.st_mtime, (stat.st_mtime_ns, stat.st_size)))
    return sorted(found, key=lambda f: f.server_round)


def latest_run(outputs: Path) -> Path | None:
    """The run directory whose newest round file is the most recently modified, or None."""
    best: tuple[float, str] | None = None
    try:
        runs = [e for e in os.scandir(outputs) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return None
    for run in runs:
        files = round_files(Path(run.path))
        if files:
            newest = (max(f.mtime for f in files), run.name)
            best = newest if best is None or newest > best else best
    return Path(outputs) / best[1] if best else None


class RunReader:
    """Round summaries of a run, each file parsed once per change (a scrape re-reads nothing
    that did not change; the cache holds summaries, not the files)."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self._cache: dict[Path, tuple[tuple[int, int], RoundSummary | None]] = {}

    def read(self, run_dir: Path) -> tuple[list[RoundSummary], list[RoundFile], int]:
        """(summaries by round, the files, how many files could not be read)."""
        if run_dir != self.run_dir:
            self.run_dir, self._cache = run_dir, {}
        files = round_files(run_dir)
        cache: dict[Path, tuple[tuple[int, int], RoundSummary | None]] = {}
        for file in files:
            cached = self._cache.get(file.path)
            cache[file.path] = cached if cached and cached[0] == file.stamp else (file.stamp, _load(file))
        self._cache = cache
        summaries = [summary for _, summary in cache.values() if summary is not None]
        return sorted(summaries, key=lambda s: s.server_round), files, sum(s is None for _, s in cache.values())


def _load(file: RoundFile) -> RoundSummary | None:
    try:
        with file.path.open("rb") as handle:
            raw = handle.read(_MAX_FILE_BYTES + 1)
        if len(raw) > _MAX_FILE_BYTES:
            raise ValueError(f"larger than {_MAX_FILE_BYTES} bytes")
        record = json.loads(raw)
        if not isinstance(record, Mapping):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        log.warning("skipping round file %s: %s", file.path, err)
        return None
    return summarize(record, file.server_round)


def last_with(summaries: Iterable[RoundSummary], has: str) -> RoundSummary | None:
    """The latest round whose summary has a value for the attribute `has`."""
    found = None
    for summary in summaries:
        value = getattr(summary, has)
        if value is not None and value != {}:
            found = summary
    return found
