"""A node cannot steer aggregation with what it says about itself: its example count, its
figures or its dataset label. Replies are crafted Messages fed to the strategy."""

from collections import OrderedDict

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

from zk0.federation import protocol as wire
from zk0.federation.strategy import UNKNOWN_FIGURES, RoundFailed, ValidatedFedProx
from zk0.federation.validation import METRIC_RANGE, UpdateRejected, validate_update
from zk0.model.weights import to_array_record

pytestmark = pytest.mark.usefixtures("flower_task_identity")

REF = OrderedDict(w=np.zeros((3, 2), np.float32), b=np.ones(4, np.float32))
TRAIN_CAP, EVAL_CAP = 100, 50  # local-steps x batch-size, eval-batches x batch-size


def shifted(shift, reference=REF):
    return OrderedDict((k, v + np.float32(shift)) for k, v in reference.items())


def reply(node_id, label="ds-a", examples=10.0, arrays=None, message_type="train", **metrics):
    content = RecordDict(
        {
            wire.METRICS: MetricRecord({wire.NUM_EXAMPLES: examples, wire.TRAIN_LOSS: 1.0, **metrics}),
            wire.NODE: ConfigRecord({wire.DATASET_LABEL: label}),
        }
    )
    if message_type == "train":
        content[wire.ARRAYS] = to_array_record(shifted(0.1) if arrays is None else arrays)
    msg = Message(content=RecordDict(), dst_node_id=node_id, message_type=message_type)
    return Message(content=content, reply_to=msg)


def strategy(min_nodes=1, max_update_norm=100.0):
    return ValidatedFedProx(
        min_train_nodes=min_nodes,
        min_available_nodes=min_nodes,
        proximal_mu=0.0,
        max_update_norm=max_update_norm,
        max_train_examples=TRAIN_CAP,
        max_eval_examples=EVAL_CAP,
    )


@pytest.mark.parametrize(
    ("examples", "reason"),
    [
        (1e30, "more than the 100 the server asked for"),
        (TRAIN_CAP + 1, "more than the 100"),
        (float("inf"), "must be finite and positive"),
        (float("nan"), "must be finite and positive"),
        (0.0, "must be finite and positive"),
        (-5.0, "must be finite and positive"),
        ([1.0], "not a number"),
    ],
)
def test_a_bad_example_count_is_rejected_and_cannot_weight_the_mean(examples, reason):
    honest = reply(1, "ds-a", 10.0, shifted(1.0))
    hostile = reply(2, "ds-b", examples, shifted(3.0))
    arrays, report = strategy().aggregate_stream(1, [honest, hostile], REF)
    assert list(report.clients) == ["1"] and reason in report.rejected["2"]["reason"]
    np.testing.assert_allclose(arrays["w"], np.full((3, 2), 1.0, np.float32))  # the honest update alone


def test_an_example_count_at_the_cap_is_the_honest_maximum_and_is_used():
    arrays, report = strategy().aggregate_stream(1, [reply(1, examples=TRAIN_CAP, arrays=shifted(2.0))], REF)
    assert report.clients["1"]["num-examples"] == TRAIN_CAP
    np.testing.assert_allclose(arrays["w"], np.full((3, 2), 2.0, np.float32))


def test_an_aggregate_that_is_not_finite_is_not_adopted():
    # Each update is finite and within the norm bound, but the weighted sum overflows float32.
    big = OrderedDict(w=np.full((3, 2), 3e38, np.float32), b=np.full(4, 3e38, np.float32))
    replies = [reply(1, arrays=big, examples=50.0), reply(2, "ds-b", arrays=big, examples=50.0)]
    arrays, report = strategy().aggregate_stream(1, replies, big)
    assert arrays is big and report.adopted is False and report.as_dict()["adopted"] is False
    assert set(report.clients) == {"1", "2"}  # the figures are still recorded


def test_a_nan_norm_fails_the_bound():
    poisoned = OrderedDict(w=np.full((3, 2), np.nan, np.float32), b=REF["b"])  # a NaN global model
    with pytest.raises(UpdateRejected, match="norm is nan: the global weights are not finite"):
        validate_update(shifted(0.1), poisoned, 100.0)
    with pytest.raises(RoundFailed, match="0 valid updates"):
        strategy().aggregate_stream(1, [reply(1), reply(2, "ds-b")], poisoned)


def test_a_nan_bound_rejects_rather_than_accepts():
    with pytest.raises(UpdateRejected, match="exceeds the bound"):
        validate_update(shifted(0.1), REF, float("inf") * 0)


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), 1e30, METRIC_RANGE[1], -1.0])
def test_bad_losses_are_dropped_from_the_figures_but_the_update_is_used(loss):
    replies = [reply(1, **{"train-loss": loss}), reply(2, "ds-b", **{"train-loss": 2.0})]
    _, report = strategy().aggregate_stream(1, replies, REF)
    assert set(report.clients) == {"1", "2"}  # both updates averaged: their arrays are valid
    assert "train-loss" not in report.clients["1"] and "train-loss" in report.dropped_metrics["1"]
    assert report.mean("train-loss") == 2.0
    assert "1" in report.as_dict()["dropped-metrics"]


def test_a_bad_eval_score_or_its_weight_leaves_the_start_evaluation():
    replies = [
        reply(1, **{"eval-loss": float("nan"), "eval-num-examples": 8.0}),
        reply(2, "ds-b", **{"eval-loss": 1.0, "eval-num-examples": EVAL_CAP + 1.0}),
        reply(3, "ds-c", **{"eval-loss": 3.0, "eval-num-examples": 8.0}),
    ]
    _, report = strategy().aggregate_stream(1, replies, REF)
    assert set(report.clients) == {"1", "2", "3"}
    assert "more than the 50" in report.dropped_metrics["2"]["eval-num-examples"]
    assert "eval-loss" in report.dropped_metrics["2"]
    scores = report.evaluations_before_train()
    assert list(scores.clients) == ["3"] and scores.mean("eval-loss") == 3.0


def test_evaluate_replies_are_capped_and_their_losses_checked():
    replies = [
        reply(1, message_type="evaluate", examples=EVAL_CAP + 1.0, **{"eval-loss": 1.0}),
        reply(2, "ds-b", message_type="evaluate", examples=5.0, **{"eval-loss": float("inf")}),
        reply(3, "ds-c", message_type="evaluate", examples=5.0, **{"eval-loss": 2.0}),
    ]
    report = strategy().collect_evaluations(1, replies)
    assert "more than the 50" in report.rejected["1"]["reason"]
    assert "eval-loss" in report.dropped_metrics["2"] and report.mean("eval-loss") == 2.0


def test_two_nodes_with_the_same_label_keep_two_entries():
    replies = [reply(1, "ds-same", arrays=shifted(1.0)), reply(2, "ds-same", arrays=shifted(3.0))]
    arrays, report = strategy().aggregate_stream(1, replies, REF)
    assert {n: c["dataset-label"] for n, c in report.clients.items()} == {"1": "ds-same", "2": "ds-same"}
    np.testing.assert_allclose(arrays["w"], np.full((3, 2), 2.0, np.float32))
    evals = [reply(n, "ds-same", message_type="evaluate", **{"eval-loss": 1.0}) for n in (1, 2)]
    assert len(strategy().collect_evaluations(1, evals).clients) == 2


def test_a_second_reply_from_one_node_is_not_counted_twice():
    replies = [reply(1, arrays=shifted(1.0)), reply(1, "ds-other", arrays=shifted(3.0))]
    arrays, report = strategy().aggregate_stream(1, replies, REF)
    assert report.clients["1"]["dataset-label"] == "ds-a" and "second reply" in report.rejected["1"]["reason"]
    np.testing.assert_allclose(arrays["w"], np.full((3, 2), 1.0, np.float32))


def test_figures_a_reply_kind_does_not_carry_are_dropped_in_one_entry():
    made_up = {f"x{i}": 1.0 for i in range(50)}
    train = [reply(1, **made_up, **{"update-norm": 0.0}), reply(2, "ds-b")]
    _, report = strategy().aggregate_stream(1, train, REF)
    assert set(report.clients["1"]) == set(report.clients["2"])  # the same figures as an honest reply
    assert report.clients["1"]["update-norm"] > 0  # the server's own figure, not the node's
    assert list(report.dropped_metrics["1"]) == [UNKNOWN_FIGURES]
    assert report.dropped_metrics["1"][UNKNOWN_FIGURES].startswith("51 name(s) zk0 does not send: 'x0', 'x1'")
    # A train-only figure in an evaluate reply is not an evaluation figure.
    evaluate = reply(1, message_type="evaluate", **{wire.EVAL_LOSS: 1.0})
    report = strategy().collect_evaluations(1, [evaluate])
    assert set(report.clients["1"]) == {wire.DATASET_LABEL, wire.NUM_EXAMPLES, wire.EVAL_LOSS}
    assert f"'{wire.TRAIN_LOSS}'" in report.dropped_metrics["1"][UNKNOWN_FIGURES]


class UntouchableGrid:
    """A Grid that fails the test if a refused entry point gets as far as using it."""

    def __getattr__(self, name):
        raise AssertionError(f"the refused entry point used grid.{name}")


# Flower's examples call these; each would trust every reply, so each refuses and names
# what zk0 uses instead.
@pytest.mark.parametrize(
    ("call", "name", "instead"),
    [
        (
            lambda s: s.start(grid=UntouchableGrid(), initial_arrays=to_array_record(REF), num_rounds=1),
            "start",
            r"the round loop of zk0.server_app \(configure_train \+ aggregate_stream\)",
        ),
        (
            lambda s: s.aggregate_train(1, [reply(1)]),
            "aggregate_train",
            r"aggregate_stream\(server_round, replies, reference=global_arrays\)",
        ),
        (
            lambda s: s.aggregate_evaluate(1, [reply(1, message_type="evaluate")]),
            "aggregate_evaluate",
            r"collect_evaluations\(server_round, replies\)",
        ),
    ],
    ids=["start", "aggregate_train", "aggregate_evaluate"],
)
def test_flowers_unvalidated_entry_points_refuse_and_name_zk0s(call, name, instead):
    with pytest.raises(
        NotImplementedError, match=f"ValidatedFedProx.{name}\\(\\) is Flower's unvalidated path.*use {instead}"
    ):
        call(strategy())
