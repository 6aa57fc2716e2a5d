"""FedProx with FedAvg weighting, folding in validated updates one reply at a time.

Nothing a node reports is taken on trust: its weights are validated, its example count
(which weights it in the average) must be finite, positive and within what the server asked
for, its other figures finite and in range, and the round report is keyed by the node id
Flower's SuperLink stamps on the reply, not by the dataset label the node sends.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Message
from flwr.serverapp.strategy import FedProx

from zk0.federation import protocol as wire
from zk0.federation.aggregation import StreamingWeightedMean
from zk0.federation.transfer import check_transfer, decode_update
from zk0.federation.validation import UpdateRejected, check_examples, metric_problem, validate_update

log = logging.getLogger(__name__)

WEIGHT_KEY = wire.NUM_EXAMPLES
EVAL_WEIGHT_KEY = wire.EVAL_NUM_EXAMPLES  # in train replies that also evaluated the received weights
LABEL_KEY = wire.DATASET_LABEL
UPDATE_NORM = "update-norm"  # the server's own figure for each accepted update (not a wire name)
UNKNOWN_FIGURES = "unknown-figures"  # the entry in `dropped_metrics` for names zk0 does not send
_MAX_LABEL = 64  # a label is `ds-` + 16 hex digits; anything longer is cut in reports and logs


class RoundFailed(RuntimeError):
    """Too few usable replies for a round; the message says how many and why."""


@dataclass
class RoundReport:
    """Per-client figures of one round, keyed by the Flower node id of each reply (as the
    SuperLink stamps it); the node's anonymous dataset label is kept as data, so a node
    that reports another's label cannot overwrite that node's entry."""

    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: dict[str, dict[str, str]] = field(default_factory=dict)
    dropped_metrics: dict[str, dict[str, str]] = field(default_factory=dict)
    failed: int = 0
    adopted: bool | None = None  # training only: False when the aggregate was not finite

    def mean(self, key: str) -> float | None:
        pairs = [(m[key], m[WEIGHT_KEY]) for m in self.clients.values() if key in m]
        total = sum(w for _, w in pairs)
        return sum(v * w for v, w in pairs) / total if total else None

    def as_dict(self) -> dict[str, Any]:
        out = {"clients": self.clients, "rejected": self.rejected, "failed": self.failed}
        if self.dropped_metrics:
            out["dropped-metrics"] = self.dropped_metrics
        if self.adopted is not None:
            out["adopted"] = self.adopted
        return out

    def evaluations_before_train(self) -> RoundReport:
        """The held-out losses that accepted train replies report for the weights they
        received, weighted by their own eval example counts (not by training examples)."""
        clients = {
            node: {LABEL_KEY: m[LABEL_KEY], wire.EVAL_LOSS: m[wire.EVAL_LOSS], WEIGHT_KEY: m[EVAL_WEIGHT_KEY]}
            for node, m in self.clients.items()
            if wire.EVAL_LOSS in m and EVAL_WEIGHT_KEY in m
        }
        return RoundReport(clients=clients)


def _node(reply: Message) -> str:
    return str(reply.metadata.src_node_id)


def _label(reply: Message) -> str:
    if not reply.has_content():
        return ""
    record = reply.content.config_records.get(wire.NODE)
    label = record.get(LABEL_KEY) if record else None
    return str(label)[:_MAX_LABEL] if label else ""


def _metrics(
    reply: Message, weight_cap: float, eval_cap: float | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """(usable figures, dropped figure -> reason). Raises `UpdateRejected` when the example
    count that weights the reply is missing or unusable: then the whole reply is dropped.
    Any other figure that is not finite, outside `METRIC_RANGE` or not one the reply kind
    carries (`protocol.TRAIN_METRICS`, `protocol.EVALUATE_METRICS`) is only dropped, and the
    reply's weights may still be used: they are validated on their own. `eval_cap` (train
    replies only) caps the count that weights the loss a node reports before training."""
    record = reply.content.metric_records.get(wire.METRICS)
    if record is None or WEIGHT_KEY not in record:
        raise UpdateRejected(f"reply has no '{WEIGHT_KEY}' metric to weight it by")
    metrics = {WEIGHT_KEY: check_examples(record[WEIGHT_KEY], weight_cap, WEIGHT_KEY)}
    dropped: dict[str, str] = {}
    known = wire.EVALUATE_METRICS if eval_cap is None else wire.TRAIN_METRICS
    unknown = [key for key in record if key not in known]
    if unknown:  # one entry, names cut: a node cannot grow the round's report with made-up names
        names = ", ".join(repr(key[:_MAX_LABEL]) for key in unknown[:3])
        dropped[UNKNOWN_FIGURES] = f"{len(unknown)} name(s) zk0 does not send: {names}"
    for key, value in record.items():
        if key == WEIGHT_KEY or key not in known:
            continue
        if isinstance(value, list):
            dropped[key] = "a list, not a figure"
        elif (problem := metric_problem(float(value))) is None:
            metrics[key] = float(value)
        else:
            dropped[key] = problem
    if eval_cap is None:
        return metrics, dropped
    if EVAL_WEIGHT_KEY in metrics:
        try:
            check_examples(metrics[EVAL_WEIGHT_KEY], eval_cap, EVAL_WEIGHT_KEY)
        except UpdateRejected as err:
            dropped[EVAL_WEIGHT_KEY] = str(err)
            del metrics[EVAL_WEIGHT_KEY]
    if wire.EVAL_LOSS in metrics and EVAL_WEIGHT_KEY not in metrics:
        dropped[wire.EVAL_LOSS] = f"no usable '{EVAL_WEIGHT_KEY}' to weight it by"
        del metrics[wire.EVAL_LOSS]
    return metrics, dropped


def _all_finite(arrays: OrderedDict[str, np.ndarray]) -> bool:
    return all(np.isfinite(value).all() for value in arrays.values())


class ValidatedFedProx(FedProx):
    """Flower's FedProx (it sends `proximal-mu`; clients add the term) whose training
    aggregation validates each update against the global weights before using it.

    `max_train_examples` (local-steps x batch-size) and `max_eval_examples` (eval-batches x
    batch-size) cap the example counts nodes report. Use `configure_train`, then
    `aggregate_stream`; `configure_evaluate`, then `collect_evaluations`. Flower's own
    `start`, `aggregate_train` and `aggregate_evaluate` would skip all of this, so they refuse.
    `transfer` is how replies must be encoded (`zk0.federation.transfer`); others are rejected.
    """

    def __init__(
        self,
        *,
        max_update_norm: float,
        max_train_examples: int,
        max_eval_examples: int,
        transfer: str = wire.FP32,
        **kwargs: Any,
    ) -> None:
        # The record and weight names are the protocol's, whatever Flower's defaults become.
        super().__init__(
            weighted_by_key=WEIGHT_KEY, arrayrecord_key=wire.ARRAYS, configrecord_key=wire.CONFIG, **kwargs
        )
        self.max_update_norm = max_update_norm
        self.max_train_examples = max_train_examples
        self.max_eval_examples = max_eval_examples
        self.transfer = check_transfer(transfer)

    def _refuse(self, name: str, instead: str) -> NotImplementedError:
        return NotImplementedError(
            f"{type(self).__name__}.{name}() is Flower's unvalidated path (it trusts every reply's weights "
            f"and '{WEIGHT_KEY}'); use {instead}"
        )

    def start(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse("start", "the round loop of zk0.server_app (configure_train + aggregate_stream)")

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> Any:
        raise self._refuse("aggregate_train", "aggregate_stream(server_round, replies, reference=global_arrays)")

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> Any:
        raise self._refuse("aggregate_evaluate", "collect_evaluations(server_round, replies)")

    def _drop_metrics(self, report: RoundReport, server_round: int, node: str, dropped: dict[str, str]) -> None:
        if dropped:
            report.dropped_metrics[node] = dropped
            log.warning("round %d: node %s: dropped figures %s", server_round, node, dropped)

    def _reject(self, report: RoundReport, server_round: int, node: str, label: str, reason: str) -> None:
        report.rejected.setdefault(node, {LABEL_KEY: label, "reason": reason})
        log.warning("round %d: dropped reply from node %s (%s): %s", server_round, node, label or "no label", reason)

    def aggregate_stream(
        self,
        server_round: int,
        replies: Iterable[Message],
        reference: OrderedDict[str, np.ndarray],
        received: OrderedDict[str, np.ndarray] | None = None,
    ) -> tuple[OrderedDict[str, np.ndarray], RoundReport]:
        """The global weights moved by the weighted mean of the valid updates, and the round's
        report. `reference` is the server's float32 global weights; `received` what nodes decoded
        from the message when the transfer rounded them (`Downlink.received`): updates are decoded
        and measured against it. A result that is not finite is not adopted: `reference` comes
        back and the report says `adopted: False`."""
        sent = reference if received is None else received
        mean = StreamingWeightedMean()
        report = RoundReport()
        for reply in replies:
            node, label = _node(reply), _label(reply)
            if reply.has_error():
                report.failed += 1
                log.warning("round %d: node %s (%s) failed: %s", server_round, node, label, reply.error.reason)
                continue
            try:
                if node in report.clients or node in report.rejected:
                    raise UpdateRejected("a second reply from this node in one round")
                metrics, dropped = _metrics(reply, self.max_train_examples, self.max_eval_examples)
                update = decode_update(reply.content, sent, self.transfer)
                metrics[UPDATE_NORM] = validate_update(update, sent, self.max_update_norm)
            except UpdateRejected as err:
                self._reject(report, server_round, node, label, str(err))
                continue
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is caught below
                mean.add(update, metrics[WEIGHT_KEY])
            report.clients[node] = {LABEL_KEY: label, **metrics}
            self._drop_metrics(report, server_round, node, dropped)
            del update, reply  # keep one update alive at a time
        if mean.count < self.min_train_nodes:
            raise RoundFailed(
                f"round {server_round}: {mean.count} valid updates, fewer than min-nodes={self.min_train_nodes} "
                f"({len(report.rejected)} rejected, {report.failed} failed); see the log above"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            result = mean.result()
            if sent is not reference:  # the master weights move by the mean update, in float32
                for name, value in result.items():
                    np.add(np.subtract(value, sent[name], out=value), reference[name], out=value)
        report.adopted = _all_finite(result)
        if not report.adopted:
            log.error("round %d: the aggregate is not finite; keeping the previous global weights", server_round)
            return reference, report
        return result, report

    def collect_evaluations(self, server_round: int, replies: Iterable[Message]) -> RoundReport:
        report = RoundReport()
        for reply in replies:
            node, label = _node(reply), _label(reply)
            if reply.has_error():
                report.failed += 1
                log.warning(
                    "round %d: evaluation on node %s (%s) failed: %s", server_round, node, label, reply.error.reason
                )
                continue
            try:
                if node in report.clients or node in report.rejected:
                    raise UpdateRejected("a second reply from this node in one round")
                metrics, dropped = _metrics(reply, self.max_eval_examples)
            except UpdateRejected as err:
                self._reject(report, server_round, node, label, str(err))
                continue
            report.clients[node] = {LABEL_KEY: label, **metrics}
            self._drop_metrics(report, server_round, node, dropped)
        return report
