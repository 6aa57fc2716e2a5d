"""Prometheus metrics of the federation server, served by `zk0 monitor serve`.

A long-lived process beside the SuperLink (the `monitor` service of the server stack), not the
ServerApp: that process starts and ends with each run, and would take its endpoint with it.
The ServerApp's figures reach the monitor through the round JSON files it already writes, the
durable record of each run (`<outputs>/<run>/metrics/round_<N>.json`, `zk0.monitoring.round_files`);
the node counts come from the SuperLink's SQLite database, opened read-only
(`zk0.monitoring.superlink_db`). Nothing runs between scrapes: `collect()` reads the current
state when Prometheus asks (prometheus_client's custom collector pattern).

The figures are those of the latest run: the run directory with the most recently modified
round file. Per-round gauges hold the latest round that has the figure; `*_total` counters
add up the whole run. No label carries a path, a repo id or a hostname (round_files says how).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from zk0.federation.checkpoints import STATE_FILE, latest_checkpoint
from zk0.monitoring import round_files as rounds
from zk0.monitoring.superlink_db import SuperLinkDBError, read_node_counts

log = logging.getLogger(__name__)


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels or [])


class ServerMetricsCollector:
    """The zk0 server figures at scrape time: the latest run's rounds, checkpoints and the
    SuperLink's nodes. Concurrent scrapes take turns."""

    def __init__(self, outputs: Path, superlink_db: Path, clock: Callable[[], float] = time.time) -> None:
        self.outputs = Path(outputs)
        self.superlink_db = Path(superlink_db)
        self._clock = clock
        self._reader = rounds.RunReader()
        self._lock = threading.Lock()
        self._last_db_error: str | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # built in full under the lock: the reader's cache is shared
            now = self._clock()
            metrics = [*self._superlink_metrics(now), *self._run_metrics(now)]
        return iter(metrics)

    # ---- the SuperLink's nodes

    def _superlink_metrics(self, now: float) -> Iterator[Metric]:
        up = _gauge("zk0_superlink_db_up", "1 when the SuperLink's database could be read at this scrape, else 0.")
        try:
            counts = read_node_counts(self.superlink_db, now=now)
        except SuperLinkDBError as err:
            if str(err) != self._last_db_error:  # once per new problem, not at every scrape
                log.warning("%s", err)
                self._last_db_error = str(err)
            up.add_metric([], 0)
            yield up
            return
        if self._last_db_error is not None:
            log.info("the SuperLink database %s is readable again", self.superlink_db)
            self._last_db_error = None
        up.add_metric([], 1)
        enrolled = _gauge("zk0_superlink_nodes_enrolled", "Nodes whose key is registered (not unregistered).")
        enrolled.add_metric([], counts.enrolled)
        online = _gauge("zk0_superlink_nodes_online", "Enrolled nodes online now (heartbeat deadline ahead).")
        online.add_metric([], counts.online)
        yield from (up, enrolled, online)

    # ---- the latest run

    def _run_metrics(self, now: float) -> Iterator[Metric]:
        outputs_up = _gauge("zk0_monitor_outputs_up", "1 when the outputs directory could be listed, else 0.")
        outputs_up.add_metric([], 1 if self.outputs.is_dir() else 0)
        yield outputs_up
        run_dir = rounds.latest_run(self.outputs)
        if run_dir is None:
            return
        summaries, files, unreadable = self._reader.read(run_dir)
        run = rounds.run_label(run_dir.name)
        bad = _gauge("zk0_run_round_files_unreadable", "Round files of the run that could not be parsed.", ["run"])
        bad.add_metric([run], unreadable)
        yield bad
        if files:
            newest = _gauge(
                "zk0_run_last_round_timestamp_seconds", "When the newest round file was written (unix time).", ["run"]
            )
            newest.add_metric([run], max(f.mtime for f in files))
            yield newest
        yield from _checkpoint_metrics(run_dir, run, now)
        if summaries:
            last = _gauge(
                "zk0_run_last_round", "The latest round the run has recorded (0: the starting point).", ["run"]
            )
            last.add_metric([run], summaries[-1].server_round)
            yield last
            yield from _round_metrics(summaries, run)
            yield from _run_totals(summaries, run)


def _checkpoint_metrics(run_dir: Path, run: str, now: float) -> Iterator[Metric]:
    try:
        found = latest_checkpoint(run_dir)
        if found is None:
            return
        server_round, directory = found
        written = (directory / STATE_FILE).stat().st_mtime  # written last, just before the rename
    except OSError:  # unreadable, or replaced while we looked: no checkpoint figures this time
        return
    age = _gauge("zk0_checkpoint_age_seconds", "Seconds since the run's newest checkpoint was written.", ["run"])
    age.add_metric([run], max(0.0, now - written))
    last = _gauge("zk0_checkpoint_last_round", "The round of the run's newest checkpoint.", ["run"])
    last.add_metric([run], server_round)
    yield from (age, last)


def _round_metrics(summaries: list[rounds.RoundSummary], run: str) -> Iterator[Metric]:
    if timed := rounds.last_with(summaries, "seconds"):
        duration = _gauge("zk0_round_duration_seconds", "Wall-clock seconds of the latest timed round.", ["run"])
        duration.add_metric([run], timed.seconds or 0.0)
        steps = _gauge(
            "zk0_round_step_duration_seconds", "Seconds of each step of the latest timed round.", ["run", "step"]
        )
        for step, seconds in sorted(timed.step_seconds.items()):
            steps.add_metric([run, step], seconds)
        yield from (duration, steps)
    if sent := rounds.last_with(summaries, "bytes_per_client"):
        size = _gauge(
            "zk0_round_weights_sent_per_client_bytes", "Bytes of weights the latest round sent to each node.", ["run"]
        )
        size.add_metric([run], sent.bytes_per_client or 0.0)
        yield size
    if replied := rounds.last_with(summaries, "replies"):
        outcomes = _gauge(
            "zk0_round_replies",
            "Replies of the latest round with replies, by phase and outcome (accepted, rejected, failed).",
            ["run", "phase", "outcome"],
        )
        rejected = _gauge(
            "zk0_round_replies_rejected", "Rejected replies of the latest round, by reason.", ["run", "phase", "reason"]
        )
        for phase, replies in sorted(replied.replies.items()):
            outcomes.add_metric([run, phase, "accepted"], replies.accepted)
            outcomes.add_metric([run, phase, "rejected"], sum(replies.rejected.values()))
            outcomes.add_metric([run, phase, "failed"], replies.failed)
            for reason, count in sorted(replies.rejected.items()):
                rejected.add_metric([run, phase, reason], count)
        round_of = _gauge("zk0_round_replies_round", "The round the zk0_round_replies* figures are from.", ["run"])
        round_of.add_metric([run], replied.server_round)
        yield from (outcomes, rejected, round_of)
    if adopted := rounds.last_with(summaries, "adopted"):
        kept = _gauge(
            "zk0_round_aggregate_adopted", "1 when the latest round's aggregate was finite and adopted.", ["run"]
        )
        kept.add_metric([run], 1 if adopted.adopted else 0)
        yield kept
    yield from _loss_metrics(summaries, run)


def _loss_metrics(summaries: list[rounds.RoundSummary], run: str) -> Iterator[Metric]:
    if trained := rounds.last_with(summaries, "train_loss"):
        loss = _gauge(
            "zk0_round_train_loss", "Training loss of the latest round, per node dataset label.", ["run", "dataset"]
        )
        for label, value in sorted(trained.train_loss.items()):
            loss.add_metric([run, label], value)
        yield loss
    if trained := rounds.last_with(summaries, "train_mean_loss"):
        mean = _gauge("zk0_round_train_mean_loss", "The latest round's training loss, weighted by examples.", ["run"])
        mean.add_metric([run], trained.train_mean_loss or 0.0)
        yield mean
    client = _gauge(
        "zk0_client_eval_loss",
        "Loss on the nodes' held-out episodes, per node dataset label: of the weights the latest round "
        "started from (weights=round-start) or of the latest evaluated aggregate (weights=round-end).",
        ["run", "weights", "dataset"],
    )
    client_mean = _gauge(
        "zk0_client_eval_mean_loss", "zk0_client_eval_loss over all nodes, weighted by examples.", ["run", "weights"]
    )
    for weights in rounds.CLIENT_EVAL_SECTIONS.values():
        scored = [s for s in summaries if s.client_eval_loss.get(weights)]
        if scored:
            for label, value in sorted(scored[-1].client_eval_loss[weights].items()):
                client.add_metric([run, weights, label], value)
        averaged = [s for s in summaries if weights in s.client_eval_mean_loss]
        if averaged:
            client_mean.add_metric([run, weights], averaged[-1].client_eval_mean_loss[weights])
    yield from (client, client_mean)
    if evaluated := rounds.last_with(summaries, "server_eval_loss"):
        server = _gauge(
            "zk0_server_eval_loss",
            "The server's loss on each of its eval datasets (label: zk0 monitor eval-label URI).",
            ["run", "dataset"],
        )
        for label, value in sorted(evaluated.server_eval_loss.items()):
            server.add_metric([run, label], value)
        server_round = _gauge("zk0_server_eval_round", "The round of the latest server evaluation.", ["run"])
        server_round.add_metric([run], evaluated.server_round)
        yield from (server, server_round)
    if evaluated := rounds.last_with(summaries, "server_eval_mean_loss"):
        server_mean = _gauge("zk0_server_eval_mean_loss", "The server's loss averaged over its eval datasets.", ["run"])
        server_mean.add_metric([run], evaluated.server_eval_mean_loss or 0.0)
        yield server_mean


def _run_totals(summaries: list[rounds.RoundSummary], run: str) -> Iterator[Metric]:
    outcomes: dict[tuple[str, str], int] = defaultdict(int)
    reasons: dict[tuple[str, str], int] = defaultdict(int)
    for summary in summaries:
        for phase, replies in summary.replies.items():
            outcomes[phase, "accepted"] += replies.accepted
            outcomes[phase, "failed"] += replies.failed
            outcomes[phase, "rejected"] += sum(replies.rejected.values())
            for reason, count in replies.rejected.items():
                reasons[phase, reason] += count
    total = CounterMetricFamily(
        "zk0_run_replies",
        "Replies over the run's recorded rounds, by phase and outcome.",
        labels=["run", "phase", "outcome"],
    )
    for (phase, outcome), count in sorted(outcomes.items()):
        total.add_metric([run, phase, outcome], count)
    rejected = CounterMetricFamily(
        "zk0_run_replies_rejected",
        "Rejected replies over the run's recorded rounds, by reason.",
        labels=["run", "phase", "reason"],
    )
    for (phase, reason), count in sorted(reasons.items()):
        rejected.add_metric([run, phase, reason], count)
    yield from (total, rejected)


def make_registry(collector: ServerMetricsCollector) -> CollectorRegistry:
    """A registry of the zk0 figures alone (not the process-wide default with its own collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def start_metrics_server(
    collector: ServerMetricsCollector, host: str, port: int
) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics on `host`:`port` only (a daemon thread); port 0 picks a free one.
    Raises OSError (with the address) when the address cannot be bound."""
    try:
        return start_http_server(port, addr=host, registry=make_registry(collector))
    except OSError as err:
        raise OSError(
            err.errno,
            f"cannot listen on {host}:{port} ({err.strerror or err}): choose a free port and an address of this "
            "machine (--listen HOST:PORT)",
        ) from None
