"""The transfer encodings: what a node decodes is what the server measures its update
against, 16-bit rounding stays within bfloat16's step, int8 within half a channel's step,
and error feedback makes what a node sends add up to what it trained."""

from collections import OrderedDict

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

from zk0.federation import protocol as wire
from zk0.federation.strategy import ValidatedFedProx
from zk0.federation.transfer import (
    RESIDUAL,
    decode_global,
    decode_update,
    dequantize_int8,
    encode_global,
    encode_update,
    from_bf16,
    message_transfer,
    quantize_int8,
    to_bf16,
)
from zk0.model.weights import to_array_record

pytestmark = pytest.mark.usefixtures("flower_task_identity")

BF16_REL = 2.0**-8  # half a step of an 8-bit mantissa (7 stored bits + the implicit one)


def weights(seed=0, std=0.02):
    """A linear layer's weight and a norm weight near 1.0, as in SmolVLA's trainable set."""
    rng = np.random.default_rng(seed)
    return OrderedDict(
        w=rng.standard_normal((16, 32)).astype(np.float32) * np.float32(std),
        norm=np.ones(32, np.float32) + rng.standard_normal(32).astype(np.float32) * np.float32(std),
    )


def local_step(seed, std=1e-3):
    """What a round of local training changes."""
    rng = np.random.default_rng(seed)
    return OrderedDict(
        (n, rng.standard_normal(v.shape).astype(np.float32) * np.float32(std)) for n, v in weights().items()
    )


def test_bf16_round_trip_is_within_half_a_step_and_keeps_specials():
    x = np.random.default_rng(1).standard_normal(100_000).astype(np.float32) * np.float32(1e3)
    bits = to_bf16(x)
    assert bits.dtype == np.uint16 and bits.nbytes == x.nbytes // 2
    back = from_bf16(bits)
    assert back.dtype == np.float32
    assert np.all(np.abs(back - x) <= np.abs(x) * BF16_REL)
    assert np.array_equal(from_bf16(to_bf16(back)), back), "bfloat16 values must survive unchanged"
    specials = from_bf16(to_bf16(np.array([np.nan, np.inf, -np.inf, -0.0, 1e-40], np.float32)))
    assert np.isnan(specials[0]) and specials[1] == np.inf and specials[2] == -np.inf
    assert specials[3] == 0 and np.signbit(specials[3]) and specials[4] > 0  # subnormals too


def test_bf16_keeps_float32_range_where_fp16_would_overflow():
    x = np.array([1e5, 3e38, 1e-30], np.float32)  # fp16 tops out at 65504 and flushes 1e-30
    assert np.allclose(from_bf16(to_bf16(x)), x, rtol=BF16_REL)


def test_int8_error_is_at_most_half_a_step_of_its_output_channel():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 128)).astype(np.float32) * np.logspace(-4, 0, 64, dtype=np.float32)[:, None]
    q, scales = quantize_int8(x)
    assert q.dtype == np.int8 and scales.dtype == np.float32 and scales.shape == (64,)
    assert np.abs(q).max() == 127 and q.min() >= -127
    np.testing.assert_allclose(scales, np.abs(x).max(axis=1) / 127, rtol=1e-6)
    error = np.abs(dequantize_int8(q, scales) - x)
    # Per row: small rows get small steps (per-tensor scaling would flatten them to zero).
    assert np.all(error <= scales[:, None] * (0.5 + 1e-5))
    vector, scale = quantize_int8(np.array([0.5, -1.0, 0.0], np.float32))
    assert scale.shape == (1,) and list(vector) == [64, -127, 0]
    zeros, zero_scale = quantize_int8(np.zeros((3, 4), np.float32))
    assert not zeros.any() and not zero_scale.any()


def test_the_node_decodes_exactly_what_the_server_measures_updates_against():
    global_weights = weights()
    for transfer in wire.TRANSFERS:
        sent = encode_global(global_weights, transfer)
        received = decode_global(sent.record, transfer)
        assert all(np.array_equal(received[n], sent.received[n]) for n in global_weights), transfer
        assert all(v.dtype == np.float32 for v in received.values())
        assert sent.config()[wire.TRANSFER] == transfer


@pytest.mark.parametrize("transfer", [wire.BF16, wire.INT8_DELTA])
def test_an_unchanged_weight_arrives_unchanged_and_the_update_is_exact_to_the_codec(transfer):
    sent = encode_global(weights(), transfer)
    step = local_step(5)
    trained = OrderedDict(w=sent.received["w"] + step["w"], norm=sent.received["norm"].copy())
    reply = RecordDict(encode_update(trained, sent.received, transfer, RecordDict()))
    update = decode_update(reply, sent.received, transfer)
    np.testing.assert_array_equal(update["norm"], sent.received["norm"])
    bound = np.abs(step["w"]) * BF16_REL if transfer == wire.BF16 else np.abs(step["w"]).max(axis=1)[:, None] / 254
    float32_sums = np.abs(sent.received["w"]) * 2.0**-22  # received + step, and back, in float32
    assert np.all(np.abs((update["w"] - sent.received["w"]) - step["w"]) <= bound * 1.001 + float32_sums)


def test_a_change_below_a_bf16_step_of_the_weight_still_arrives():
    # A norm weight near 1.0 has bfloat16 steps of 2**-7: sending weights would lose this change.
    sent = encode_global(OrderedDict(norm=np.ones(4, np.float32)), wire.BF16)
    trained = OrderedDict(norm=sent.received["norm"] + np.float32(1e-3))
    reply = RecordDict(encode_update(trained, sent.received, wire.BF16, RecordDict()))
    np.testing.assert_allclose(decode_update(reply, sent.received, wire.BF16)["norm"] - 1, 1e-3, rtol=BF16_REL)


def test_error_feedback_makes_the_sent_updates_add_up_to_the_true_ones():
    rng = np.random.default_rng(3)
    received = OrderedDict(w=np.zeros((8, 64), np.float32), b=np.zeros(8, np.float32))
    state, fresh_sums, true_sum, sent_sum = RecordDict(), None, None, None
    for _ in range(50):
        step = OrderedDict(
            (n, rng.standard_normal(v.shape).astype(np.float32) * np.float32(1e-3)) for n, v in received.items()
        )
        for target in ("ef", "plain"):
            node_state = state if target == "ef" else RecordDict()
            reply = RecordDict(encode_update(step, received, wire.INT8_DELTA, node_state))
            got = decode_update(reply, received, wire.INT8_DELTA)
            if target == "ef":
                sent_sum = got if sent_sum is None else OrderedDict((n, sent_sum[n] + got[n]) for n in got)
            else:
                fresh_sums = got if fresh_sums is None else OrderedDict((n, fresh_sums[n] + got[n]) for n in got)
        true_sum = step if true_sum is None else OrderedDict((n, true_sum[n] + step[n]) for n in step)
    residual = state[RESIDUAL]
    for name in received:
        drift = np.abs(sent_sum[name] - true_sum[name])
        # What is still owed is exactly the carried residual: at most half of one round's step.
        np.testing.assert_allclose(drift, np.abs(residual[name].numpy()), atol=1e-6)
        assert drift.max() <= 1e-3 * 4 / 127  # 4 sigma / 127 covers half a step of every row
        assert drift.max() < np.abs(fresh_sums[name] - true_sum[name]).max() / 3, "no better than no feedback"


def test_a_residual_that_does_not_fit_or_is_not_finite_is_not_carried():
    received = OrderedDict(w=np.zeros((2, 3), np.float32))
    state = RecordDict({RESIDUAL: to_array_record(OrderedDict(other=np.ones(2, np.float32)))})
    step = OrderedDict(w=np.full((2, 3), 0.5, np.float32))
    reply = RecordDict(encode_update(step, received, wire.INT8_DELTA, state))
    np.testing.assert_allclose(decode_update(reply, received, wire.INT8_DELTA)["w"], 0.5)
    assert list(state[RESIDUAL].keys()) == ["w"]
    encode_update(OrderedDict(w=np.full((2, 3), np.nan, np.float32)), received, wire.INT8_DELTA, state)
    assert RESIDUAL not in state, "a diverged round must not poison the next ones"


def test_the_node_refuses_weights_encoded_otherwise_than_its_run_says():
    sent = encode_global(weights(), wire.FP32)
    with pytest.raises(ValueError, match="arrived as float32; a bf16 run sends uint16"):
        decode_global(sent.record, wire.BF16)
    assert message_transfer(ConfigRecord({wire.TRANSFER: wire.BF16}), wire.BF16) == wire.BF16
    for config in (ConfigRecord({wire.TRANSFER: wire.FP32}), ConfigRecord()):
        with pytest.raises(ValueError, match="not running the same zk0 release"):
            message_transfer(config, wire.BF16)


def reply(content: dict, node_id: int, examples: float = 10.0) -> Message:
    content = RecordDict(
        {
            **content,
            wire.METRICS: MetricRecord({wire.NUM_EXAMPLES: examples}),
            wire.NODE: ConfigRecord({wire.DATASET_LABEL: f"ds-{node_id}"}),
        }
    )
    return Message(content=content, reply_to=Message(content=RecordDict(), dst_node_id=node_id, message_type="train"))


@pytest.mark.parametrize("transfer", wire.TRANSFERS)
def test_the_server_keeps_float32_master_weights_and_moves_them_by_the_mean_update(transfer):
    master = weights()
    master["norm"] += np.float32(1e-4)  # below a bfloat16 step of 1.0: only the master holds it
    sent = encode_global(master, transfer)
    steps = [local_step(10 + i) for i in range(2)]
    replies = [
        reply(
            encode_update(OrderedDict((n, sent.received[n] + s[n]) for n in s), sent.received, transfer, RecordDict()),
            i + 1,
        )
        for i, s in enumerate(steps)
    ]
    strategy = ValidatedFedProx(
        min_train_nodes=2,
        min_available_nodes=2,
        max_update_norm=10.0,
        max_train_examples=100,
        max_eval_examples=10,
        transfer=transfer,
    )
    result, report = strategy.aggregate_stream(1, replies, master, sent.received)
    assert sorted(report.clients) == ["1", "2"] and not report.rejected
    for name in master:
        expected = master[name] + (steps[0][name] + steps[1][name]) / 2
        assert result[name].dtype == np.float32
        np.testing.assert_allclose(result[name], expected, atol=2e-5)  # codec error of a 1e-3 step
