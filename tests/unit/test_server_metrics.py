"""`zk0 monitor serve`: the server's Prometheus figures from real parts.

Round files are written by the project's own writer (`RoundRecorder`) from reports that the
real strategy made of crafted replies, as the ServerApp's round loop composes them; the
checkpoint by `save_checkpoint`; the SuperLink database by Flower 1.42's own `SqlLinkState`.
The collector is scraped through prometheus_client's exposition, and over HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import OrderedDict
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import yaml
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.app import Error as FlowerError
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from zk0 import privacy
from zk0.faults import FAULTS, inject_fault
from zk0.federation import protocol as wire
from zk0.federation.checkpoints import save_checkpoint
from zk0.federation.metrics import RoundRecorder
from zk0.federation.rounds import StepClock
from zk0.federation.strategy import ValidatedFedProx
from zk0.federation.transfer import decode_update, encode_global
from zk0.federation.validation import UpdateRejected, check_examples, validate_update
from zk0.model.weights import to_array_record
from zk0.monitoring import headline, superlink_db
from zk0.monitoring import round_files as rounds
from zk0.monitoring.server_metrics import ServerMetricsCollector, make_registry, start_metrics_server

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("flower_task_identity")

REF = OrderedDict(w=np.zeros((3, 2), np.float32), b=np.ones(4, np.float32))
GOOD_LABEL, OTHER_LABEL = "ds-0123456789abcdef", "ds-fedcba9876543210"
# Private strings put wherever they could reach the inputs; none may reach the exposition.
SECRET_PATH, SECRET_REPO, SECRET_HOST = "/home/alice/so100-secret", "alice/private-set", "alice-laptop.example.com"
SECRETS = (SECRET_PATH, "so100-secret", SECRET_REPO, SECRET_HOST, "alice")
EVAL_URIS = (f"local:{SECRET_PATH}", f"hf:{SECRET_REPO}")
ZK0 = Path(sys.executable).parent / "zk0"


def shifted(shift: float) -> OrderedDict[str, np.ndarray]:
    return OrderedDict((k, v + np.float32(shift)) for k, v in REF.items())


def reply(node_id, label=GOOD_LABEL, examples=10.0, arrays=None, message_type="train", figures=None):
    """A node's reply as the ClientApp sends it; `examples` None leaves out the count."""
    figures = {**({} if examples is None else {wire.NUM_EXAMPLES: examples}), **(figures or {})}
    content = RecordDict({wire.METRICS: MetricRecord(figures), wire.NODE: ConfigRecord({wire.DATASET_LABEL: label})})
    if message_type == "train":
        content[wire.ARRAYS] = to_array_record(shifted(0.1) if arrays is None else arrays)
    return Message(content=content, reply_to=Message(RecordDict(), dst_node_id=node_id, message_type=message_type))


def failed_reply(node_id):
    return Message(
        FlowerError(code=0, reason="boom"), reply_to=Message(RecordDict(), dst_node_id=node_id, message_type="train")
    )


def strategy() -> ValidatedFedProx:
    return ValidatedFedProx(
        min_train_nodes=1,
        min_available_nodes=1,
        proximal_mu=0.0,
        max_update_norm=100.0,
        max_train_examples=100,
        max_eval_examples=50,
    )


class _Saves:
    """Stands in for the policy and lerobot's processors, which save themselves into the dir."""

    def save_pretrained(self, directory: Path) -> None:
        (Path(directory) / "model.safetensors").write_bytes(b"")


def write_round(recorder, run_dir, server_round, train_replies, eval_replies=None, server_eval=None):
    """One round file composed as zk0/server_app.py's round loop composes it."""
    clock, sent = StepClock(), encode_global(REF, wire.FP32)
    _, train = strategy().aggregate_stream(server_round, train_replies, REF, sent.received)
    clock.lap("train-messages")
    start = train.evaluations_before_train()
    record = {
        "train": train.as_dict(),
        "train-loss": train.mean(wire.TRAIN_LOSS),
        "client-eval-start": start.as_dict(),
        "client-eval-start-loss": start.mean(wire.EVAL_LOSS),
        "transfer": wire.FP32,
        "bytes-per-client": sent.nbytes,
    }
    if eval_replies is not None:
        report = strategy().collect_evaluations(server_round, eval_replies)
        record["client-eval"], record["client-eval-loss"] = report.as_dict(), report.mean(wire.EVAL_LOSS)
        clock.lap("evaluate-messages")
    if server_eval is not None:
        record["server-eval"] = server_eval
        clock.lap("server-eval")
    saves = _Saves()
    record["checkpoint"] = str(save_checkpoint(run_dir, server_round, saves, saves, saves, {"run": run_dir.name}))
    clock.lap("checkpoint")
    record["seconds"], record["seconds-by-step"] = clock.total(), clock.seconds
    return recorder.write(server_round, record)


@pytest.fixture
def outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An outputs tree: an older run, a decoy directory, and run prod-1 (rounds 0-2) whose
    nodes sent private strings as labels, figure names and weight names."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    root = tmp_path / SECRET_HOST / "outputs"  # the outputs path itself names the host
    old = RoundRecorder(root / "old-run", "old-run", "", {})
    old_file = old.write(1, {"train-loss": 9.0, "seconds": 1.0})
    os.utime(old_file, (time.time() - 3600, time.time() - 3600))
    (root / "wandb" / "latest-run").mkdir(parents=True)

    run_dir = root / "prod-1"
    recorder = RoundRecorder(run_dir, "prod-1", "", {})
    saves = _Saves()
    checkpoint = save_checkpoint(run_dir, 0, saves, saves, saves, {"run": "prod-1"})
    recorder.write(
        0, {"server-eval": {EVAL_URIS[0]: 1.5, EVAL_URIS[1]: 2.5, "mean": 2.0}, "checkpoint": str(checkpoint)}
    )
    start = {wire.EVAL_LOSS: 3.0, wire.EVAL_NUM_EXAMPLES: 5.0}
    write_round(
        recorder,
        run_dir,
        1,
        [
            reply(1, figures={wire.TRAIN_LOSS: 2.0, **start}),
            reply(2, OTHER_LABEL, figures={wire.TRAIN_LOSS: 4.0, **start}),
        ],
        eval_replies=[
            reply(1, examples=10.0, message_type="evaluate", figures={wire.EVAL_LOSS: 1.0}),
            reply(2, OTHER_LABEL, examples=30.0, message_type="evaluate", figures={wire.EVAL_LOSS: 2.0}),
            reply(
                3, SECRET_REPO, examples=500.0, message_type="evaluate", figures={wire.EVAL_LOSS: 2.0}
            ),  # over the cap
        ],
    )
    hostile_weights = OrderedDict([(SECRET_PATH, np.zeros((3, 2))), ("b", np.ones(4, np.float32))])  # float64
    write_round(
        recorder,
        run_dir,
        2,
        [
            reply(1, figures={wire.TRAIN_LOSS: 1.0, wire.EVAL_LOSS: 1.5, wire.EVAL_NUM_EXAMPLES: 5.0}),
            reply(
                2, SECRET_PATH, examples=30.0, figures={wire.TRAIN_LOSS: 3.0, SECRET_HOST: 1.0}
            ),  # hostile label, made-up figure
            reply(1, arrays=shifted(0.2)),  # a second reply from node 1
            reply(3, SECRET_REPO, arrays=inject_fault(shifted(0.1), "nan")),
            reply(4, arrays=inject_fault(shifted(0.1), "huge-norm")),
            reply(5, arrays=inject_fault(shifted(0.1), "wrong-shape")),
            reply(6, examples=1e9),
            reply(7, arrays=hostile_weights),
            failed_reply(8),
        ],
        server_eval={EVAL_URIS[0]: 1.25, EVAL_URIS[1]: 2.25, "mean": 1.75},
    )
    return root


@pytest.fixture
def superlink_state(tmp_path: Path):
    """A SuperLink database made by Flower's own link state: one node online, one registered,
    one whose heartbeat deadline has passed (still marked online), one unregistered."""
    from flwr.server.superlink.linkstate.sql_linkstate import SqlLinkState
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.superlink.federation import NoOpFederationManager

    path = tmp_path / "state" / "superlink.db"
    path.parent.mkdir()
    state = SqlLinkState(str(path), NoOpFederationManager(), ObjectStoreFactory().store())
    state.initialize()
    online, registered, expired, removed = (
        state.create_node("admin", "admin", f"key-{n}".encode(), heartbeat_interval=30.0) for n in range(4)
    )
    assert state.activate_node(online, heartbeat_interval=3600.0)
    assert state.activate_node(expired, heartbeat_interval=0.01)
    state.delete_node("admin", removed)
    time.sleep(0.1)  # past `expired`'s deadline (2 x 0.01 s)
    return state, path, (online, registered, expired, removed)


def scrape(collector: ServerMetricsCollector) -> tuple[str, dict[tuple[str, frozenset], float]]:
    text = generate_latest(make_registry(collector)).decode()
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def value(samples, name, **labels):
    return samples[name, frozenset(labels.items())]


def test_the_scrape_reports_the_latest_run_and_the_superlinks_nodes(outputs, superlink_state):
    _, db_path, _ = superlink_state
    text, samples = scrape(ServerMetricsCollector(outputs, db_path))
    run = {"run": "prod-1"}
    assert value(samples, "zk0_superlink_db_up") == 1
    assert value(samples, "zk0_superlink_nodes_enrolled") == 3
    assert value(samples, "zk0_superlink_nodes_online") == 1
    assert value(samples, "zk0_monitor_outputs_up") == 1
    assert value(samples, "zk0_run_last_round", **run) == 2
    assert value(samples, "zk0_run_round_files_unreadable", **run) == 0
    assert time.time() - value(samples, "zk0_run_last_round_timestamp_seconds", **run) < 300
    assert 0 <= value(samples, "zk0_checkpoint_age_seconds", **run) < 300
    assert value(samples, "zk0_checkpoint_last_round", **run) == 2

    steps = {dict(labels)["step"] for name, labels in samples if name == "zk0_round_step_duration_seconds"}
    assert steps == {"train-messages", "server-eval", "checkpoint"}
    assert value(samples, "zk0_round_duration_seconds", **run) >= sum(
        value(samples, "zk0_round_step_duration_seconds", step=s, **run) for s in steps
    )
    assert value(samples, "zk0_round_weights_sent_per_client_bytes", **run) == encode_global(REF, wire.FP32).nbytes

    # Round 2: 2 accepted, 6 rejected (one of each reason below), 1 failed.
    train = {"run": "prod-1", "phase": "train"}
    assert value(samples, "zk0_round_replies_round", **run) == 2
    assert value(samples, "zk0_round_replies", outcome="accepted", **train) == 2
    assert value(samples, "zk0_round_replies", outcome="rejected", **train) == 6
    assert value(samples, "zk0_round_replies", outcome="failed", **train) == 1
    reasons = {
        dict(labels)["reason"]: v for (name, labels), v in samples.items() if name == "zk0_round_replies_rejected"
    }
    assert reasons == {
        "duplicate-reply": 1,
        "not-finite": 1,
        "norm-bound": 1,
        "weight-shape": 1,
        "example-count": 1,
        "weight-dtype": 1,
    }
    # Whole run: round 1's 2 + round 2's 2 accepted train replies; round 1's evaluate phase.
    assert value(samples, "zk0_run_replies_total", outcome="accepted", **train) == 4
    assert value(samples, "zk0_run_replies_rejected_total", reason="duplicate-reply", **train) == 1
    evaluate = {"run": "prod-1", "phase": "evaluate"}
    assert value(samples, "zk0_run_replies_total", outcome="accepted", **evaluate) == 2
    assert value(samples, "zk0_run_replies_rejected_total", reason="example-count", **evaluate) == 1
    assert value(samples, "zk0_round_aggregate_adopted", **run) == 1

    # Losses per anonymous label; a label that is not a node's hash counts as "invalid".
    assert value(samples, "zk0_round_train_loss", dataset=GOOD_LABEL, **run) == 1.0
    assert value(samples, "zk0_round_train_loss", dataset="invalid", **run) == 3.0
    assert value(samples, "zk0_round_train_mean_loss", **run) == pytest.approx((1.0 * 10 + 3.0 * 30) / 40)
    assert value(samples, "zk0_client_eval_loss", weights="round-start", dataset=GOOD_LABEL, **run) == 1.5
    assert value(samples, "zk0_client_eval_loss", weights="round-end", dataset=OTHER_LABEL, **run) == 2.0  # round 1
    assert value(samples, "zk0_client_eval_mean_loss", weights="round-end", **run) == pytest.approx(1.75)
    for uri, loss in zip(EVAL_URIS, (1.25, 2.25), strict=True):
        assert value(samples, "zk0_server_eval_loss", dataset=privacy.server_eval_label(uri), **run) == loss
    assert value(samples, "zk0_server_eval_mean_loss", **run) == 1.75
    assert value(samples, "zk0_server_eval_round", **run) == 2
    assert 'run="old-run"' not in text


def test_the_status_headline_reads_the_same_scrape(outputs, superlink_state):
    _, db_path, _ = superlink_state
    text, _ = scrape(ServerMetricsCollector(outputs, db_path))
    h = headline.parse(text)
    assert (h.nodes_enrolled, h.nodes_online, h.run, h.last_round) == (3, 1, "prod-1", 2)
    assert h.replies == {"accepted": 2, "rejected": 6, "failed": 1}
    assert h.server_eval_loss == 1.75 and h.server_eval_round == 2
    assert h.train_loss == pytest.approx((1.0 * 10 + 3.0 * 30) / 40)
    assert h.round_seconds is not None and h.checkpoint_age_seconds is not None
    shown = "\n".join(headline.lines(h))
    assert "nodes: 1 online of 3 enrolled" in shown and "run prod-1: round 2" in shown
    assert headline.lines(headline.parse("")) == [
        "nodes: unknown (the SuperLink database is not readable)",
        "run: none recorded yet",
    ]


def test_the_status_scrape_asks_the_port_the_monitor_listens_on():
    stack = yaml.safe_load((REPO / "roles/superlink/files/compose.yml").read_text())
    listen = [a for a in stack["services"]["monitor"]["command"] if a.startswith("--listen=")]
    assert listen == [f"--listen=0.0.0.0:{urlsplit(headline.MONITOR_URL).port}"]


def test_no_path_repo_id_or_hostname_reaches_the_exposition(outputs, superlink_state):
    _, db_path, _ = superlink_state
    inputs = "".join(p.read_text() for p in outputs.rglob("round_*.json"))
    for secret in (SECRET_PATH, SECRET_REPO, SECRET_HOST):  # the test is not vacuous
        assert secret in inputs, secret
    text, _ = scrape(ServerMetricsCollector(outputs, db_path))
    assert not [secret for secret in SECRETS if secret in text]
    labels = {
        value for family in text_string_to_metric_families(text) for s in family.samples for value in s.labels.values()
    }
    allowed = {"prod-1", "train", "evaluate", "accepted", "rejected", "failed", "round-start", "round-end", "invalid"}
    allowed |= set(rounds.REJECTION_REASONS) | {"train-messages", "evaluate-messages", "server-eval", "checkpoint"}
    odd = {v for v in labels - allowed if not (v.startswith(("ds-", "eval-")) and v[v.index("-") + 1 :].isalnum())}
    assert not odd


def test_the_server_eval_label_is_a_short_stable_hash(runner_env):
    uri = EVAL_URIS[1]
    label = privacy.server_eval_label(uri)
    assert label == "eval-" + hashlib.sha256(uri.encode()).hexdigest()[:12] == privacy.server_eval_label(f" {uri} ")
    said = subprocess.run(
        [ZK0, "monitor", "eval-label", uri], capture_output=True, text=True, env=runner_env, check=False
    )
    assert said.returncode == 0 and said.stdout.split() == [label, uri]


def test_run_names_that_are_not_plain_are_hashed():
    assert rounds.run_label("prod-1") == "prod-1"
    assert rounds.run_label("alice's run").startswith("run-") and "alice" not in rounds.run_label("alice's run")


def _reason_of(call) -> str:
    with pytest.raises(UpdateRejected) as caught:
        call()
    return rounds.rejection_reason(str(caught.value))


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("nan", "not-finite"),
        ("inf", "not-finite"),
        ("wrong-shape", "weight-shape"),
        ("wrong-dtype", "weight-dtype"),
        ("missing-tensor", "weight-names"),
        ("huge-norm", "norm-bound"),
    ],
)
def test_every_fault_maps_to_its_reason(fault, reason):
    assert fault in FAULTS
    assert _reason_of(lambda: validate_update(inject_fault(shifted(0.1), fault), REF, 100.0)) == reason


def _content(arrays, scales=None) -> RecordDict:
    content = RecordDict({wire.ARRAYS: to_array_record(arrays)}) if arrays is not None else RecordDict()
    if scales is not None:
        content[wire.SCALES] = to_array_record(scales)
    return content


INT8 = OrderedDict(w=np.zeros((3, 2), np.int8), b=np.zeros(4, np.int8))
SCALES = OrderedDict(w=np.ones(3, np.float32), b=np.ones(1, np.float32))


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: validate_update({**shifted(0.1), "x": np.zeros(1, np.float32)}, REF, 100.0), "weight-names"),
        (lambda: validate_update(shifted(0.1), {**REF, "w": np.full((3, 2), np.nan, np.float32)}, 100.0), "not-finite"),
        (lambda: check_examples([1.0], 100, wire.NUM_EXAMPLES), "example-count"),
        (lambda: check_examples(float("inf"), 100, wire.NUM_EXAMPLES), "example-count"),
        (lambda: check_examples(101.0, 100, wire.NUM_EXAMPLES), "example-count"),
        (lambda: decode_update(_content(None), REF, wire.FP32), "encoding"),
        (lambda: decode_update(_content(shifted(0.1), SCALES), REF, wire.FP32), "encoding"),
        (lambda: decode_update(_content(INT8), REF, wire.INT8_DELTA), "encoding"),
        (
            lambda: decode_update(_content(INT8, {**SCALES, "z": np.ones(1, np.float32)}), REF, wire.INT8_DELTA),
            "encoding",
        ),
        (lambda: decode_update(_content(INT8, {"w": SCALES["w"]}), REF, wire.INT8_DELTA), "encoding"),
        (
            lambda: decode_update(_content(INT8, {**SCALES, "w": np.ones(2, np.float32)}), REF, wire.INT8_DELTA),
            "encoding",
        ),
        (
            lambda: decode_update(_content(INT8, {**SCALES, "w": -np.ones(3, np.float32)}), REF, wire.INT8_DELTA),
            "encoding",
        ),
        (lambda: decode_update(_content(shifted(0.1)), REF, wire.BF16), "weight-dtype"),
        # A weight name chosen to look like another reason: the server's own suffix decides.
        (lambda: decode_update(_content({"x: contains NaN or Inf": np.zeros(2)}), REF, wire.FP32), "weight-dtype"),
    ],
)
def test_rejection_messages_map_to_their_reason(call, reason):
    assert _reason_of(call) == reason


def test_strategy_rejections_map_to_their_reason():
    _, report = strategy().aggregate_stream(1, [reply(1), reply(1), reply(2, examples=None)], REF)
    reasons = {node: rounds.rejection_reason(entry["reason"]) for node, entry in report.rejected.items()}
    assert reasons == {"1": "duplicate-reply", "2": "example-count"}
    assert rounds.rejection_reason("something new went wrong") == "other"


def test_online_follows_the_heartbeat_deadline_and_the_scrape_writes_nothing(superlink_state):
    from flwr.supercore.constant import NodeStatus

    state, db_path, (online, *_) = superlink_state
    assert (superlink_db.STATUS_ONLINE, superlink_db.STATUS_UNREGISTERED) == (
        NodeStatus.ONLINE,
        NodeStatus.UNREGISTERED,
    )
    before = db_path.read_bytes(), sorted(p.name for p in db_path.parent.iterdir())
    counts = superlink_db.read_node_counts(db_path)
    assert (counts.enrolled, counts.online) == (3, 1)
    assert (db_path.read_bytes(), sorted(p.name for p in db_path.parent.iterdir())) == before
    with sqlite3.connect(db_path) as db:  # Flower has not tagged the expired node offline yet
        assert db.execute("SELECT COUNT(*) FROM node WHERE status = 'online'").fetchone() == (2,)
    # Flower's own view agrees: ONLINE nodes once it has looked at the deadlines.
    assert {n.node_id for n in state.get_node_info(statuses=[NodeStatus.ONLINE])} == {online}
    assert superlink_db.read_node_counts(db_path) == counts


def _locked_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE node (status TEXT, online_until REAL)")
    db.execute("BEGIN EXCLUSIVE")
    return db


@pytest.mark.parametrize("problem", ["missing", "locked", "not-a-database", "no-node-table"])
def test_an_unreadable_database_gives_db_up_0_and_the_rest_is_still_served(outputs, tmp_path, problem):
    path = tmp_path / "superlink.db"
    holder = None
    if problem == "locked":
        holder = _locked_db(path)
    elif problem == "not-a-database":
        path.write_bytes(b"not sqlite" * 100)
    elif problem == "no-node-table":
        sqlite3.connect(path).close()
    try:
        started = time.monotonic()
        _, samples = scrape(ServerMetricsCollector(outputs, path))
        assert time.monotonic() - started < 5  # a short busy timeout, not the default 5 s per try
    finally:
        if holder is not None:
            holder.close()
    assert value(samples, "zk0_superlink_db_up") == 0
    assert not any(name.startswith("zk0_superlink_nodes") for name, _ in samples)
    assert value(samples, "zk0_run_last_round", run="prod-1") == 2
    assert not path.exists() if problem == "missing" else True  # read-only: nothing created


def test_outputs_missing_empty_or_with_a_broken_round_file(tmp_path, superlink_state):
    _, db_path, _ = superlink_state
    _, samples = scrape(ServerMetricsCollector(tmp_path / "nowhere", db_path))
    assert value(samples, "zk0_monitor_outputs_up") == 0 and value(samples, "zk0_superlink_db_up") == 1
    broken = tmp_path / "outputs" / "run-a" / "metrics"
    broken.mkdir(parents=True)
    (broken / "round_1.json").write_text('{"round": 1, "seconds": 2.0}')
    (broken / "round_2.json").write_text("{not json")
    collector = ServerMetricsCollector(tmp_path / "outputs", db_path)
    _, samples = scrape(collector)
    assert value(samples, "zk0_run_round_files_unreadable", run="run-a") == 1
    assert value(samples, "zk0_run_last_round", run="run-a") == 1
    (broken / "round_2.json").write_text('{"round": 2, "seconds": 3.0}')  # fixed: read again
    _, samples = scrape(collector)
    assert value(samples, "zk0_run_last_round", run="run-a") == 2
    assert value(samples, "zk0_round_duration_seconds", run="run-a") == 3.0


def test_the_latest_run_is_the_one_with_the_newest_round_file(outputs, superlink_state):
    _, db_path, _ = superlink_state
    assert rounds.latest_run(outputs) == outputs / "prod-1"
    os.utime(outputs / "old-run" / "metrics" / "round_1.json")  # now the newest
    _, samples = scrape(ServerMetricsCollector(outputs, db_path))
    assert value(samples, "zk0_run_last_round", run="old-run") == 1
    assert not any(("run", "prod-1") in labels for _, labels in samples)


def test_the_http_server_listens_only_on_the_given_address(outputs, superlink_state):
    _, db_path, _ = superlink_state
    server, thread = start_metrics_server(ServerMetricsCollector(outputs, db_path), "127.0.0.1", 0)
    try:
        host, port = server.socket.getsockname()[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            body = answer.read().decode()
        assert 'zk0_run_last_round{run="prod-1"} 2.0' in body and "zk0_superlink_db_up 1.0" in body
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.2", port), timeout=2):
            pass  # another loopback address of this machine: nothing listens there
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def runner_env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "disabled"}


def test_zk0_monitor_serve_runs_the_endpoint_and_refuses_a_bad_address(outputs, superlink_state, runner_env):
    _, db_path, _ = superlink_state
    bad = subprocess.run(
        [ZK0, "monitor", "serve", "--outputs", str(outputs), "--superlink-db", str(db_path), "--listen", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=runner_env,
        check=False,
    )
    assert bad.returncode == 2 and "has no port" in bad.stderr
    port = _free_port()
    command = [ZK0, "monitor", "serve", "--outputs", str(outputs), "--superlink-db", str(db_path)]
    proc = subprocess.Popen(
        [*command, "--listen", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=runner_env
    )
    try:
        body, deadline = "", time.monotonic() + 60
        while not body and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                    body = answer.read().decode()
            except OSError:
                time.sleep(0.2)
        assert "zk0_superlink_nodes_enrolled 3.0" in body, (
            proc.stdout.read().decode() if proc.poll() is not None else ""
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_round_files_are_read_as_json_objects_only(tmp_path):
    metrics = tmp_path / "run" / "metrics"
    metrics.mkdir(parents=True)
    (metrics / "round_3.json").write_text(json.dumps([1, 2]))
    summaries, files, unreadable = rounds.RunReader().read(tmp_path / "run")
    assert (summaries, [f.server_round for f in files], unreadable) == ([], [3], 1)
