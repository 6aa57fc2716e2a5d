"""The few figures `zk0bot server status` prints, read from the monitor's own scrape.

The same exposition Prometheus reads (`zk0.monitoring.server_metrics`), parsed with
prometheus_client's parser, so the status line and a dashboard cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

# The monitor serves this inside its container (the server stack's `command:` for `monitor`);
# `zk0bot server status` reads it with `docker compose exec`, whatever the host's bind is.
MONITOR_URL = "http://127.0.0.1:9400/metrics"
SCRAPE_CODE = (
    f"import sys, urllib.request as u; sys.stdout.write(u.urlopen({MONITOR_URL!r}, timeout=10).read().decode())"
)


@dataclass(frozen=True)
class Headline:
    """The latest run at a glance. None: the monitor has no such figure (yet)."""

    nodes_enrolled: int | None = None
    nodes_online: int | None = None
    run: str | None = None
    last_round: int | None = None
    round_seconds: float | None = None
    replies: dict[str, int] = field(default_factory=dict)  # latest round's train replies by outcome
    train_loss: float | None = None
    server_eval_loss: float | None = None
    server_eval_round: int | None = None
    checkpoint_age_seconds: float | None = None


def parse(exposition: str) -> Headline:
    """The headline figures of a `/metrics` page (unknown and missing families are ignored)."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def one(name: str, **labels: str) -> float | None:
        for have, value in samples.get(name, []):
            if all(have.get(k) == v for k, v in labels.items()):
                return value
        return None

    def whole(name: str) -> int | None:
        value = one(name)
        return None if value is None else int(value)

    runs = [labels["run"] for labels, _ in samples.get("zk0_run_last_round", [])]
    replies = {
        labels["outcome"]: int(value)
        for labels, value in samples.get("zk0_round_replies", [])
        if labels.get("phase") == "train"
    }
    server_round = one("zk0_server_eval_round")
    return Headline(
        nodes_enrolled=whole("zk0_superlink_nodes_enrolled"),
        nodes_online=whole("zk0_superlink_nodes_online"),
        run=runs[0] if runs else None,
        last_round=whole("zk0_run_last_round"),
        round_seconds=one("zk0_round_duration_seconds"),
        replies=replies,
        train_loss=one("zk0_round_train_mean_loss"),
        server_eval_loss=one("zk0_server_eval_mean_loss"),
        server_eval_round=None if server_round is None else int(server_round),
        checkpoint_age_seconds=one("zk0_checkpoint_age_seconds"),
    )


def lines(h: Headline) -> list[str]:
    """What a person reads: one line per topic, and a plain word where a figure is missing."""
    nodes = "unknown (the SuperLink database is not readable)"
    if h.nodes_enrolled is not None:
        nodes = f"{h.nodes_online if h.nodes_online is not None else '?'} online of {h.nodes_enrolled} enrolled"
    out = [f"nodes: {nodes}"]
    if h.run is None:
        return [*out, "run: none recorded yet"]
    timing = f", {h.round_seconds:.0f} s" if h.round_seconds is not None else ""
    out.append(f"run {h.run}: round {h.last_round}{timing}")
    if h.replies:
        out.append("  replies: " + ", ".join(f"{h.replies[k]} {k}" for k in sorted(h.replies)))
    if h.train_loss is not None:
        out.append(f"  train loss: {h.train_loss:.4f}")
    if h.server_eval_loss is not None:
        out.append(f"  server-eval loss: {h.server_eval_loss:.4f} (round {h.server_eval_round})")
    if h.checkpoint_age_seconds is not None:
        out.append(f"  newest checkpoint: {h.checkpoint_age_seconds / 60:.0f} min ago")
    return out
