from collections import OrderedDict

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.app import Error as FlowerError

from zk0.faults import FAULTS, inject_fault
from zk0.federation import protocol as wire
from zk0.federation.aggregation import StreamingWeightedMean
from zk0.federation.strategy import RoundFailed, ValidatedFedProx
from zk0.federation.validation import UpdateRejected, validate_update
from zk0.model.weights import to_array_record

pytestmark = pytest.mark.usefixtures("flower_task_identity")

REF = OrderedDict(w=np.zeros((3, 2), np.float32), b=np.ones(4, np.float32))


def good(shift=0.1):
    return OrderedDict((k, v + shift) for k, v in REF.items())


def test_a_good_update_passes_and_reports_its_norm():
    assert validate_update(good(0.5), REF, 100.0) == pytest.approx(0.5 * np.sqrt(10))


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("nan", "NaN"),
        ("inf", "Inf"),
        ("wrong-shape", "shape"),
        ("wrong-dtype", "dtype"),
        ("missing-tensor", "missing"),
        ("huge-norm", "exceeds the bound"),
    ],
)
def test_every_kind_of_poison_is_rejected(fault, reason):
    assert fault in FAULTS
    with pytest.raises(UpdateRejected, match=reason):
        validate_update(inject_fault(good(), fault), REF, 100.0)


def test_extra_names_are_rejected():
    with pytest.raises(UpdateRejected, match="unexpected"):
        validate_update({**good(), "x": np.zeros(1, np.float32)}, REF, 100.0)


def test_streaming_mean_equals_the_weighted_average():
    rng = np.random.default_rng(1)
    updates = [
        OrderedDict((k, rng.standard_normal(v.shape).astype(np.float32)) for k, v in REF.items()) for _ in range(5)
    ]
    weights = [1.0, 3.0, 2.0, 5.0, 4.0]
    mean = StreamingWeightedMean()
    for u, w in zip(updates, weights, strict=True):
        mean.add(u, w)
    result = mean.result()
    for name in REF:
        expected = sum(u[name] * w for u, w in zip(updates, weights, strict=True)) / sum(weights)
        np.testing.assert_allclose(result[name], expected, rtol=1e-5, atol=1e-6)


def reply(arrays, examples, label, node_id=1):
    content = RecordDict(
        {
            wire.ARRAYS: to_array_record(arrays),
            wire.METRICS: MetricRecord({wire.NUM_EXAMPLES: float(examples), wire.TRAIN_LOSS: 1.0}),
            wire.NODE: ConfigRecord({wire.DATASET_LABEL: label}),
        }
    )
    msg = Message(content=content, dst_node_id=node_id, message_type="train")
    return Message(content=content, reply_to=msg)


def strategy(min_nodes):
    return ValidatedFedProx(
        min_train_nodes=min_nodes,
        min_available_nodes=min_nodes,
        proximal_mu=0.1,
        max_update_norm=100.0,
        max_train_examples=100,
        max_eval_examples=50,
    )


def test_round_drops_the_poisoned_update_and_averages_the_rest():
    replies = [
        reply(good(1.0), 10, "ds-a", node_id=1),
        reply(inject_fault(good(), "nan"), 10, "ds-bad", node_id=2),
        reply(good(3.0), 30, "ds-b", node_id=3),
    ]
    arrays, report = strategy(2).aggregate_stream(1, replies, REF)
    assert {n: c["dataset-label"] for n, c in report.clients.items()} == {"1": "ds-a", "3": "ds-b"}
    assert report.rejected["2"]["dataset-label"] == "ds-bad" and "NaN" in report.rejected["2"]["reason"]
    assert report.adopted
    np.testing.assert_allclose(arrays["w"], np.full((3, 2), 2.5, np.float32))


def test_round_fails_clearly_when_too_few_valid_updates_remain():
    replies = [
        reply(good(), 10, "ds-a", node_id=1),
        reply(inject_fault(good(), "wrong-shape"), 10, "ds-bad", node_id=2),
    ]
    with pytest.raises(RoundFailed, match="1 valid updates, fewer than min-nodes=2"):
        strategy(2).aggregate_stream(1, replies, REF)


def test_error_replies_count_as_failed():
    ok = reply(good(), 10, "ds-a")
    failed = Message(
        FlowerError(code=0, reason="boom"), reply_to=Message(RecordDict(), dst_node_id=2, message_type="train")
    )
    _, report = strategy(1).aggregate_stream(1, [ok, failed], REF)
    assert report.failed == 1 and [c["dataset-label"] for c in report.clients.values()] == ["ds-a"]
