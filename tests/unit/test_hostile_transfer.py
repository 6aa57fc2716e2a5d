"""A node cannot slip past update validation through the transfer encoding: a reply encoded
otherwise than the run's `transfer` says, int8 values without usable scales, or arrays that
lie about their dtype are rejected with the reason, and the dequantized update is held to
the same checks (finite, within `max-update-norm`). Replies are crafted Messages fed to the
strategy's real aggregation path next to an honest one."""

import io
import re
from collections import OrderedDict

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from zk0.federation import protocol as wire
from zk0.federation.strategy import ValidatedFedProx
from zk0.federation.transfer import encode_global, encode_update, to_bf16
from zk0.model.weights import to_array_record

pytestmark = pytest.mark.usefixtures("flower_task_identity")

MASTER = OrderedDict(w=np.full((4, 3), 0.5, np.float32), b=np.ones(2, np.float32))
STEP = np.float32(0.25)  # the honest node's update, exactly representable in every encoding


def honest_records(transfer, sent):
    trained = OrderedDict((n, v + STEP) for n, v in sent.received.items())
    return encode_update(trained, sent.received, transfer, RecordDict())


def reply(records, node_id):
    content = RecordDict(
        {
            **records,
            wire.METRICS: MetricRecord({wire.NUM_EXAMPLES: 10.0}),
            wire.NODE: ConfigRecord({wire.DATASET_LABEL: f"ds-{node_id}"}),
        }
    )
    return Message(content=content, reply_to=Message(content=RecordDict(), dst_node_id=node_id, message_type="train"))


def aggregate(transfer, hostile_records, max_update_norm=10.0):
    """(result, report) of a round with an honest node 1 and the crafted node 2."""
    sent = encode_global(MASTER, transfer)
    strategy = ValidatedFedProx(
        min_train_nodes=1,
        min_available_nodes=1,
        max_update_norm=max_update_norm,
        max_train_examples=100,
        max_eval_examples=10,
        transfer=transfer,
    )
    replies = [reply(honest_records(transfer, sent), 1), reply(hostile_records(sent), 2)]
    return strategy.aggregate_stream(1, replies, MASTER, sent.received)


def records(arrays=None, scales=None):
    out = {}
    if arrays is not None:
        out[wire.ARRAYS] = arrays if isinstance(arrays, ArrayRecord) else to_array_record(arrays)
    if scales is not None:
        out[wire.SCALES] = scales if isinstance(scales, ArrayRecord) else to_array_record(scales)
    return out


def int8(fill=1, **override):
    values = OrderedDict((n, np.full(v.shape, fill, np.int8)) for n, v in MASTER.items())
    return OrderedDict(values, **override)


def scales(value=0.01, **override):
    out = OrderedDict(w=np.full(4, value, np.float32), b=np.full(1, value, np.float32))
    return OrderedDict(out, **override)


def mislabeled(value: np.ndarray, declared: str) -> Array:
    """An Array whose dtype field says `declared` while its bytes hold `value`'s dtype."""
    buffer = io.BytesIO()
    np.save(buffer, value, allow_pickle=False)
    return Array(dtype=declared, shape=tuple(value.shape), stype="numpy.ndarray", data=buffer.getvalue())


def bf16_deltas(value):
    return OrderedDict((n, to_bf16(np.full(v.shape, value, np.float32))) for n, v in MASTER.items())


HOSTILE = {
    # A reply in another encoding than the run's.
    "fp32 reply in a bf16 run": (wire.BF16, lambda s: records(s.received), "dtype float32, expected uint16"),
    "int8 reply in a bf16 run": (wire.BF16, lambda s: records(int8(), scales()), "which a bf16 run does not send"),
    "bf16 reply in an fp32 run": (wire.FP32, lambda s: records(bf16_deltas(0.1)), "dtype uint16, expected float32"),
    "bf16 reply in an int8 run": (wire.INT8_DELTA, lambda s: records(bf16_deltas(0.1), scales()), "expected int8"),
    "int8 without scales": (wire.INT8_DELTA, lambda s: records(int8()), "without their 'scales'"),
    "no weights at all": (wire.INT8_DELTA, lambda s: records(scales=scales()), "carries no weights"),
    # Scales that are not the ones an honest node computes.
    "a scale missing": (
        wire.INT8_DELTA,
        lambda s: records(int8(), OrderedDict(w=np.full(4, 0.01, np.float32))),
        "b: int8 values without a scale",
    ),
    "scales for unknown weights": (
        wire.INT8_DELTA,
        lambda s: records(int8(), scales(x=np.ones(1, np.float32))),
        "scales for weights the reply lacks",
    ),
    "one scale per tensor, not per channel": (
        wire.INT8_DELTA,
        lambda s: records(int8(), scales(w=np.full(1, 0.01, np.float32))),
        r"w: scales of shape \(1,\), expected \(4,\)",
    ),
    "per column": (
        wire.INT8_DELTA,
        lambda s: records(int8(), scales(w=np.full(3, 0.01, np.float32))),
        "scales of shape",
    ),
    "NaN scale": (wire.INT8_DELTA, lambda s: records(int8(), scales(np.nan)), "finite and >= 0"),
    "infinite scale": (wire.INT8_DELTA, lambda s: records(int8(), scales(np.inf)), "finite and >= 0"),
    "negative scale": (wire.INT8_DELTA, lambda s: records(int8(), scales(-0.01)), "finite and >= 0"),
    "float64 scales": (
        wire.INT8_DELTA,
        lambda s: records(int8(), OrderedDict((n, v.astype(np.float64)) for n, v in scales().items())),
        "w scales: dtype float64, expected float32",
    ),
    # The dequantized update is checked like any other.
    "dequantized update beyond the norm bound": (
        wire.INT8_DELTA,
        lambda s: records(int8(127), scales(1.0)),
        "exceeds the bound",
    ),
    "dequantized update overflows": (wire.INT8_DELTA, lambda s: records(int8(127), scales(3e38)), "NaN or Inf"),
    "bf16 NaN update": (wire.BF16, lambda s: records(bf16_deltas(np.nan)), "NaN or Inf"),
    "bf16 update beyond the norm bound": (wire.BF16, lambda s: records(bf16_deltas(100.0)), "exceeds the bound"),
    "int8 of the wrong shape": (
        wire.INT8_DELTA,
        lambda s: records(int8(w=np.ones((3, 4), np.int8)), scales(w=np.full(3, 0.01, np.float32))),
        r"w: shape \(3, 4\), expected \(4, 3\)",
    ),
    "a weight missing": (
        wire.BF16,
        lambda s: records(OrderedDict(w=bf16_deltas(0.1)["w"])),
        "missing",
    ),
    "an extra weight": (
        wire.INT8_DELTA,
        lambda s: records(int8(x=np.ones(2, np.int8)), scales(x=np.ones(1, np.float32))),
        "unexpected",
    ),
    # Arrays that lie about what they hold.
    "float32 bytes declared as uint16": (
        wire.BF16,
        lambda s: records(ArrayRecord({"w": mislabeled(s.received["w"], "uint16"), "b": Array(bf16_deltas(0)["b"])})),
        "declares dtype uint16 but holds float32",
    ),
    "bytes that are no array": (
        wire.INT8_DELTA,
        lambda s: records(
            ArrayRecord({"w": Array("int8", (4, 3), "numpy.ndarray", b"\x93NUMPY garbage"), "b": Array(int8()["b"])}),
            scales(),
        ),
        "w: unreadable array",
    ),
    "a serialization other than numpy": (
        wire.FP32,
        lambda s: records(ArrayRecord({"w": Array("float32", (4, 3), "torch.pickle", b"x"), "b": Array(MASTER["b"])})),
        "w: unreadable array",
    ),
}


@pytest.mark.parametrize(("transfer", "craft", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_reply_encoded_otherwise_is_rejected_and_leaves_the_honest_mean(transfer, craft, reason):
    result, report = aggregate(transfer, craft)
    assert list(report.clients) == ["1"] and list(report.rejected) == ["2"], report.as_dict()
    assert re.search(reason, report.rejected["2"]["reason"]), report.rejected["2"]["reason"]
    for name, master in MASTER.items():
        np.testing.assert_allclose(result[name], master + STEP, rtol=1e-6)  # the honest update alone


@pytest.mark.parametrize("transfer", wire.TRANSFERS)
def test_an_honest_reply_in_the_runs_encoding_is_accepted_with_its_dequantized_norm(transfer):
    result, report = aggregate(transfer, lambda s: honest_records(transfer, s))
    assert sorted(report.clients) == ["1", "2"] and not report.rejected
    size = sum(v.size for v in MASTER.values())
    assert report.clients["2"]["update-norm"] == pytest.approx(float(STEP) * size**0.5, rel=1e-2)
    for name, master in MASTER.items():
        np.testing.assert_allclose(result[name], master + STEP, rtol=1e-2)
