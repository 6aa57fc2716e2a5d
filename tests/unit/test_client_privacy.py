"""The ClientApp's replies carry weights, figures and an anonymous label: nothing that
names the dataset's path, repo id or the host. Every reply is inspected, errors included."""

import os
import socket
import stat
import tomllib
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict

from zk0.client_app import NodeError
from zk0.client_app import app as client_app
from zk0.federation import protocol as wire
from zk0.model.weights import get_trainable_arrays, to_array_record
from zk0.privacy import anonymous_dataset_label, load_or_create_secret

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("flower_task_identity")


def run_config(**overrides):
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    # fp32 transfer: the replies carry the trained weights as they are (the encodings: test_transfer).
    config.update({"local-steps": 4, "batch-size": 4, "eval-batches": 2, "device": "cpu", "transfer": wire.FP32})
    config.update(overrides)
    return config


def context(node_config, **overrides):
    return Context(run_id=1, node_id=7, node_config=node_config, state=RecordDict(), run_config=run_config(**overrides))


def request(kind, arrays, **config):
    config = ConfigRecord({wire.SERVER_ROUND: 1, wire.PROXIMAL_MU: 0.1, wire.TRANSFER: wire.FP32, **config})
    content = RecordDict({wire.ARRAYS: to_array_record(arrays), wire.CONFIG: config})
    return Message(content=content, dst_node_id=7, message_type=kind)


def all_text(reply: Message) -> str:
    """Every key and string/number value in the reply, as one searchable text."""
    parts = [repr(reply.metadata.__dict__ if hasattr(reply.metadata, "__dict__") else reply.metadata)]
    if reply.has_error():
        parts.append(reply.error.reason)
    if reply.has_content():
        for name, record in reply.content.items():
            parts.append(name)
            for key, value in record.items():
                parts.append(key)
                parts.append(repr(value) if not hasattr(value, "numpy") else "")
    return "\n".join(parts)


def secrets_of(dataset: Path) -> list[str]:
    return [str(dataset), dataset.name, "synthetic-so100", socket.gethostname()]


def test_label_is_stable_keyed_and_opaque(tmp_path):
    secret_path = tmp_path / "label-secret"
    secret = load_or_create_secret(secret_path)
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert load_or_create_secret(secret_path) == secret
    label = anonymous_dataset_label("hf:alice/kitchen-so100", secret)
    assert label == anonymous_dataset_label("hf:alice/kitchen-so100", secret)
    assert label != anonymous_dataset_label("hf:alice/garage-so100", secret)
    assert label != anonymous_dataset_label("hf:alice/kitchen-so100", os.urandom(32))
    assert "alice" not in label and "kitchen" not in label


def test_train_and_evaluate_replies_leak_nothing_about_the_node(synth_dataset, tiny_policy, zk0_cache, monkeypatch):
    monkeypatch.setenv("ZK0_LABEL_SECRET", str(zk0_cache / "label-secret"))
    node_config = {"dataset-uri": f"local:{synth_dataset}"}
    arrays = get_trainable_arrays(tiny_policy)
    replies = [
        client_app(request("train", arrays, **{wire.EVAL_BEFORE_TRAIN: True}), context(node_config)),
        client_app(request("evaluate", arrays), context(node_config)),
    ]
    for reply in replies:
        text = all_text(reply)
        for private in secrets_of(synth_dataset):
            assert private not in text, f"{private!r} leaked in a {reply.metadata.message_type} reply"
        label = reply.content[wire.NODE][wire.DATASET_LABEL]
        assert label.startswith("ds-")
    # The replies speak the protocol the server reads: its record names and figures, all of them.
    train, evaluate = replies
    assert set(train.content.keys()) == {wire.ARRAYS, wire.METRICS, wire.NODE}
    assert set(evaluate.content.keys()) == {wire.METRICS, wire.NODE}
    assert set(train.content[wire.METRICS]) == wire.TRAIN_METRICS
    assert set(evaluate.content[wire.METRICS]) == wire.EVALUATE_METRICS
    trained = train.content[wire.ARRAYS]
    assert list(trained.keys()) == list(arrays)
    assert any(not np.array_equal(trained[n].numpy(), arrays[n]) for n in arrays), "training changed no weight"
    assert train.content[wire.METRICS][wire.NUM_EXAMPLES] == 16
    assert evaluate.content[wire.METRICS][wire.EVAL_LOSS] > 0
    # Asked to, the train reply scores the received weights: the evaluate message's figures.
    scored = train.content[wire.METRICS]
    assert scored[wire.EVAL_LOSS] == pytest.approx(evaluate.content[wire.METRICS][wire.EVAL_LOSS])
    assert scored[wire.EVAL_NUM_EXAMPLES] == evaluate.content[wire.METRICS][wire.NUM_EXAMPLES]
    plain = client_app(request("train", arrays), context(node_config)).content[wire.METRICS]
    assert wire.EVAL_LOSS not in plain and plain[wire.TRAIN_LOSS] == pytest.approx(scored[wire.TRAIN_LOSS])


def test_a_failing_node_reports_no_details(tmp_path, tiny_policy, caplog):
    missing = tmp_path / "alice-private-kitchen"
    with pytest.raises(NodeError) as err:
        client_app(request("train", get_trainable_arrays(tiny_policy)), context({"dataset-uri": f"local:{missing}"}))
    # What Flower's runtime sends to the server in place of the reply:
    reason = str(type(err.value)) + ":<'" + str(err.value) + "'>"
    assert "SuperNode log" in reason and err.value.__cause__ is None
    for private in secrets_of(missing):
        assert private not in reason
    assert str(missing) in caplog.text, "the operator must still see the real reason locally"


def test_a_node_without_held_out_episodes_still_trains_when_asked_to_score(
    synth_dataset, tiny_policy, zk0_cache, monkeypatch
):
    monkeypatch.setenv("ZK0_LABEL_SECRET", str(zk0_cache / "label-secret"))
    arrays = get_trainable_arrays(tiny_policy)
    msg = request("train", arrays, **{wire.EVAL_BEFORE_TRAIN: True})
    reply = client_app(msg, context({"dataset-uri": f"local:{synth_dataset}"}, **{"eval-fraction": 0.0}))
    assert not reply.has_error() and wire.ARRAYS in reply.content
    assert wire.EVAL_LOSS not in reply.content[wire.METRICS] and reply.content[wire.METRICS][wire.NUM_EXAMPLES] == 16
