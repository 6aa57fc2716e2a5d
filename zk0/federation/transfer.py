"""How the trainable weights travel, as the run config's `transfer` says.

| transfer | server -> node | node -> server |
|---|---|---|
| `fp32` | weights, float32 | weights, float32 |
| `bf16` (default) | weights, bfloat16 | update (trained - received), bfloat16 |
| `int8-delta` | weights, bfloat16 | update + carried residual, int8 per output channel, float32 scales |

bfloat16, not float16: it keeps float32's exponent range, so nothing overflows and no loss
scaling is needed; its 8-bit mantissa costs precision, not range. numpy has no bfloat16 and
Flower's `Array` serializes numpy arrays, so a bfloat16 value travels as its bit pattern, the
upper half of the float32 word, in a uint16 array (rounded to nearest even).

Nodes send the update, not their weights, in 16 bits: bfloat16 weights lose any change below
half a step of the weight itself (2**-8 of it; a norm weight near 1.0 would not move by less
than 0.004 a round), while a bfloat16 update keeps 8 significant bits of the change.

int8 scales are per output channel (a row of a 2-D weight; one scale for a 1-D tensor): one
float32 per row adds 0.4 % to the int8 bytes, while 64-element blocks would add 6 % and break
the 96 MiB budget of the full model, and rows of a linear layer have comparable magnitudes.
What a node's int8 update loses to rounding stays in its Flower `Context.state` (a residual
added to the next round's update: error feedback), so the sum of what a node sends follows
the sum of its true updates; the state persists per node across the messages of a run.

The server keeps float32 master weights and aggregates in float32. A node computes its update
against exactly what it decoded; the server decodes each reply against the same values
(`Downlink.received`, decoded from the very bits it sent) and moves its master weights by the
mean update, so rounding the weights it sends never accumulates in the model.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from zk0.federation import protocol as wire
from zk0.federation.validation import UpdateRejected, check_names
from zk0.model.weights import from_array_record, to_array_record

log = logging.getLogger(__name__)

Arrays = OrderedDict[str, np.ndarray]

RESIDUAL = "zk0-int8-residual"  # node-local record of Context.state; never sent
INT8_MAX = 127  # symmetric range: -127..127

# The dtype each direction carries, per transfer.
_DOWN: dict[str, np.dtype] = {
    wire.FP32: np.dtype(np.float32),
    wire.BF16: np.dtype(np.uint16),
    wire.INT8_DELTA: np.dtype(np.uint16),
}
_UP: dict[str, np.dtype] = {
    wire.FP32: np.dtype(np.float32),
    wire.BF16: np.dtype(np.uint16),
    wire.INT8_DELTA: np.dtype(np.int8),
}


def check_transfer(value: object) -> str:
    """`value` if it names a transfer; ValueError naming the choices otherwise."""
    if value not in wire.TRANSFERS:
        raise ValueError(f"transfer {value!r} is not one of {', '.join(map(repr, wire.TRANSFERS))}")
    return str(value)


# bfloat16 carried as uint16 ---------------------------------------------------------------


def to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounded to nearest even; NaN stays NaN."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    bits = values.view(np.uint32)
    rounded = bits >> 16
    rounded &= 1
    rounded += 0x7FFF
    rounded += bits  # wraps around only for NaN bit patterns, fixed below
    rounded >>= 16
    out = rounded.astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():  # keep a quiet NaN: rounding could carry a NaN's mantissa into Inf
        out[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)
    return out


def from_bf16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32, exactly."""
    words = np.asarray(bits, dtype=np.uint16).astype(np.uint32)
    words <<= 16
    return words.view(np.float32)


# int8 per output channel ------------------------------------------------------------------


def scale_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """One scale per output channel (first axis) of a 2-D or larger tensor; one for the rest."""
    return (shape[0],) if len(shape) >= 2 else (1,)


def _channels(values: np.ndarray, count: int) -> np.ndarray:
    return values.reshape(count, values.size // count if count else 0)  # an empty tensor has no -1


def quantize_int8(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, float32 scales): each channel's largest magnitude maps to 127."""
    rows = _channels(np.asarray(values, dtype=np.float32), scale_shape(values.shape)[0])
    scales = (np.abs(rows).max(axis=1, initial=0.0) / INT8_MAX).astype(np.float32)
    column = scales[:, None]
    with np.errstate(invalid="ignore"):  # a NaN update gives a NaN scale, which the server rejects
        q = np.divide(rows, column, out=np.zeros_like(rows), where=column > 0)
        np.rint(q, out=q)
        np.clip(q, -INT8_MAX, INT8_MAX, out=q)
        np.nan_to_num(q, copy=False)
    return q.astype(np.int8).reshape(values.shape), scales


def dequantize_int8(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    rows = _channels(q, scales.shape[0]).astype(np.float32)
    rows *= scales[:, None]
    return rows.reshape(q.shape)


# Server -> node ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Downlink:
    """What the server sends in a round, and the float32 values every node decodes from it."""

    transfer: str
    record: ArrayRecord
    received: Arrays  # the reference of every update: exactly what the nodes train from

    @property
    def nbytes(self) -> int:
        return self.record.count_bytes()

    def config(self, extra: Mapping[str, bool | int | float | str] | None = None) -> ConfigRecord:
        """The message's config, naming the encoding so that node and server agree."""
        return ConfigRecord({**(extra or {}), wire.TRANSFER: self.transfer})


def encode_global(weights: Arrays, transfer: str) -> Downlink:
    if check_transfer(transfer) == wire.FP32:
        return Downlink(transfer, to_array_record(weights), weights)
    bits = OrderedDict((name, to_bf16(value)) for name, value in weights.items())
    received = OrderedDict((name, from_bf16(value)) for name, value in bits.items())
    return Downlink(transfer, to_array_record(bits), received)


def message_transfer(config: ConfigRecord, expected: str) -> str:
    """The transfer a server message names; it must be the node's run config's too."""
    named = config.get(wire.TRANSFER)
    if named != expected:
        raise ValueError(
            f"the server's message names transfer {named!r} but the run config says {expected!r}: "
            "server and node are not running the same zk0 release"
        )
    return expected


def decode_global(record: ArrayRecord, transfer: str) -> Arrays:
    """The global weights a server message carries, as float32 for training."""
    expected = _DOWN[check_transfer(transfer)]
    out: Arrays = OrderedDict()
    for name, value in from_array_record(record).items():
        if value.dtype != expected:
            raise ValueError(f"global weight {name} arrived as {value.dtype}; a {transfer} run sends {expected}")
        out[name] = value if transfer == wire.FP32 else from_bf16(value)
    return out


# Node -> server ----------------------------------------------------------------------------


def _residual(state: RecordDict, deltas: Arrays) -> Arrays | None:
    record = state.get(RESIDUAL)
    if not isinstance(record, ArrayRecord):
        return None
    residual = from_array_record(record)
    fits = residual.keys() == deltas.keys() and all(residual[n].shape == d.shape for n, d in deltas.items())
    if not fits:  # another model's: nothing to carry over
        log.warning("int8 residual in the node state does not fit the model; starting afresh")
        return None
    return residual


def encode_update(trained: Arrays, received: Arrays, transfer: str, state: RecordDict) -> dict[str, ArrayRecord]:
    """The records of a train reply. `received` is what the node decoded and trained from;
    `state` (the node's `Context.state`) carries the int8 residual between rounds."""
    if check_transfer(transfer) == wire.FP32:
        return {wire.ARRAYS: to_array_record(trained)}
    deltas = OrderedDict((n, np.subtract(v, received[n], dtype=np.float32)) for n, v in trained.items())
    if transfer == wire.BF16:
        return {wire.ARRAYS: to_array_record(OrderedDict((n, to_bf16(d)) for n, d in deltas.items()))}
    carried = _residual(state, deltas)
    if carried is not None:
        norm = float(np.sqrt(sum(float(np.vdot(r, r)) for r in carried.values())))
        log.info("int8-delta: adding the residual carried from the previous round (L2 norm %.3g)", norm)
    values, scales = OrderedDict(), OrderedDict()
    for name, delta in deltas.items():
        if carried is not None:
            np.add(delta, carried[name], out=delta)
        values[name], scales[name] = quantize_int8(delta)
        np.subtract(delta, dequantize_int8(values[name], scales[name]), out=delta)  # what this round could not send
    if all(np.isfinite(d).all() for d in deltas.values()):
        state[RESIDUAL] = to_array_record(deltas)
    else:  # a diverged update must not poison every later round
        state.pop(RESIDUAL, None)
    return {wire.ARRAYS: to_array_record(values), wire.SCALES: to_array_record(scales)}


def _read(array: Array, what: str, expected: np.dtype) -> np.ndarray:
    """An array of a reply, whose declared and actual dtype must be `expected`."""
    if array.dtype != expected.name:
        raise UpdateRejected(f"{what}: dtype {array.dtype}, expected {expected.name}")
    try:
        value = array.numpy()
    except (ValueError, TypeError, OSError, EOFError) as err:
        raise UpdateRejected(f"{what}: unreadable array ({type(err).__name__})") from None
    if value.dtype != expected:
        raise UpdateRejected(f"{what}: declares dtype {array.dtype} but holds {value.dtype}")
    return value


def decode_update(content: RecordDict, received: Mapping[str, np.ndarray], transfer: str) -> Arrays:
    """A train reply's weights as float32, comparable with `received` (for `validate_update`).
    Raises `UpdateRejected` when the reply is not encoded as the run's transfer says."""
    record = content.array_records.get(wire.ARRAYS)
    if record is None:
        raise UpdateRejected("reply carries no weights")
    scales = content.array_records.get(wire.SCALES)
    if transfer == wire.INT8_DELTA and scales is None:
        raise UpdateRejected(f"int8 weights without their '{wire.SCALES}' in an {transfer} run")
    if transfer != wire.INT8_DELTA and scales is not None:
        raise UpdateRejected(f"reply carries '{wire.SCALES}', which a {transfer} run does not send")
    expected = _UP[transfer]
    if transfer == wire.FP32:  # the weights themselves; validate_update checks the rest
        return OrderedDict((name, _read(array, name, expected)) for name, array in record.items())
    check_names(record, received)
    if scales is not None:
        extra = [name for name in scales if name not in record]
        if extra:
            raise UpdateRejected(f"scales for weights the reply lacks: {extra[:3]}")
    update: Arrays = OrderedDict()
    for name, reference in received.items():
        value = _read(record[name], name, expected)
        if value.shape != reference.shape:
            raise UpdateRejected(f"{name}: shape {value.shape}, expected {reference.shape}")
        if scales is None:
            delta = from_bf16(value)
        else:
            if name not in scales:
                raise UpdateRejected(f"{name}: int8 values without a scale")
            scale = _read(scales[name], f"{name} scales", np.dtype(np.float32))
            if scale.shape != scale_shape(value.shape):
                raise UpdateRejected(f"{name}: scales of shape {scale.shape}, expected {scale_shape(value.shape)}")
            if not (np.isfinite(scale).all() and (scale >= 0).all()):
                raise UpdateRejected(f"{name}: scales must be finite and >= 0")
            with np.errstate(over="ignore"):  # an overflow is a non-finite update, rejected later
                delta = dequantize_int8(value, scale)
        with np.errstate(over="ignore"):
            delta += reference
        update[name] = delta
    return update
