"""FedProx with FedAvg weighting, folding in validated updates one reply at a time."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Message
from flwr.serverapp.strategy import FedProx

from zk0.federation.aggregation import StreamingWeightedMean
from zk0.federation.validation import UpdateRejected, validate_update

log = logging.getLogger(__name__)

WEIGHT_KEY = "num-examples"
EVAL_WEIGHT_KEY = "eval-num-examples"  # in train replies that also evaluated the received weights
NODE_RECORD = "node"  # ConfigRecord with the node's anonymous dataset label


class RoundFailed(RuntimeError):
    """Too few usable replies for a round; the message says how many and why."""


@dataclass
class RoundReport:
    """Per-client figures of one round, keyed by anonymous dataset label."""

    clients: dict[str, dict[str, float]] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    failed: int = 0

    def mean(self, key: str) -> float | None:
        pairs = [(m[key], m[WEIGHT_KEY]) for m in self.clients.values() if key in m]
        total = sum(w for _, w in pairs)
        return sum(v * w for v, w in pairs) / total if total else None

    def as_dict(self) -> dict[str, Any]:
        return {"clients": self.clients, "rejected": self.rejected, "failed": self.failed}

    def evaluations_before_train(self) -> RoundReport:
        """The held-out losses that accepted train replies report for the weights they
        received, weighted by their own eval example counts (not by training examples)."""
        clients = {
            label: {"eval-loss": m["eval-loss"], WEIGHT_KEY: m[EVAL_WEIGHT_KEY]}
            for label, m in self.clients.items()
            if "eval-loss" in m and m.get(EVAL_WEIGHT_KEY, 0) > 0
        }
        return RoundReport(clients=clients)


def _label(reply: Message) -> str:
    if not reply.has_content():
        return f"node-{reply.metadata.src_node_id}"
    record = reply.content.config_records.get(NODE_RECORD)
    label = record.get("dataset-label") if record else None
    return str(label) if label else f"node-{reply.metadata.src_node_id}"


def _metrics(reply: Message) -> dict[str, float]:
    record = reply.content.metric_records.get("metrics")
    if record is None or WEIGHT_KEY not in record:
        raise UpdateRejected(f"reply has no '{WEIGHT_KEY}' metric to weight it by")
    metrics = {k: float(v) for k, v in record.items() if isinstance(v, int | float)}
    if not metrics[WEIGHT_KEY] > 0:
        raise UpdateRejected(f"'{WEIGHT_KEY}' is {metrics[WEIGHT_KEY]}, must be positive")
    return metrics


class ValidatedFedProx(FedProx):
    """Flower's FedProx (it sends `proximal-mu`; clients add the term) whose training
    aggregation validates each update against the global weights before using it."""

    def __init__(self, *, max_update_norm: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_update_norm = max_update_norm

    def aggregate_stream(
        self, server_round: int, replies: Iterable[Message], reference: OrderedDict[str, np.ndarray]
    ) -> tuple[OrderedDict[str, np.ndarray], RoundReport]:
        mean = StreamingWeightedMean()
        report = RoundReport()
        for reply in replies:
            label = _label(reply)
            if reply.has_error():
                report.failed += 1
                log.warning("round %d: %s failed: %s", server_round, label, reply.error.reason)
                continue
            try:
                metrics = _metrics(reply)
                record = reply.content.array_records.get(self.arrayrecord_key)
                if record is None:
                    raise UpdateRejected("reply carries no weights")
                update = OrderedDict((name, array.numpy()) for name, array in record.items())
                metrics["update-norm"] = validate_update(update, reference, self.max_update_norm)
            except UpdateRejected as err:
                report.rejected[label] = str(err)
                log.warning("round %d: dropped update from %s: %s", server_round, label, err)
                continue
            mean.add(update, metrics[WEIGHT_KEY])
            report.clients[label] = metrics
            del update, record, reply  # keep one update alive at a time
        if mean.count < self.min_train_nodes:
            raise RoundFailed(
                f"round {server_round}: {mean.count} valid updates, fewer than min-nodes={self.min_train_nodes} "
                f"({len(report.rejected)} rejected, {report.failed} failed); see the log above"
            )
        return mean.result(), report

    def collect_evaluations(self, server_round: int, replies: Iterable[Message]) -> RoundReport:
        report = RoundReport()
        for reply in replies:
            label = _label(reply)
            if reply.has_error():
                report.failed += 1
                log.warning("round %d: evaluation on %s failed: %s", server_round, label, reply.error.reason)
                continue
            try:
                report.clients[label] = _metrics(reply)
            except UpdateRejected as err:
                report.rejected[label] = str(err)
        return report
