"""Check what a node sends before it can touch the global model or the round's figures.

An update must carry exactly the trainable weights the server sent (same names, shapes and
dtypes), all finite, and must not move the model further than `max_update_norm` (L2 norm
of the difference to the global weights). Anything else is rejected with the reason. A
16-bit or int8 reply is decoded first (`zk0.federation.transfer`); these checks apply to
the decoded update.

The numbers a node reports about itself are checked too: the example count that weights its
update (`check_examples`) and every other figure (`metric_problem`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

# Every figure a node reports (losses, seconds, samples per second, example counts) is
# non-negative, and none comes near a million for this model; a value outside [0, 1e6) or
# NaN/Inf is dropped from the round's figures rather than averaged in.
METRIC_RANGE = (0.0, 1e6)


class UpdateRejected(ValueError):
    """A client update that fails validation; the message says why."""


def validate_update(
    update: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    max_update_norm: float,
) -> float:
    """Raise `UpdateRejected` for a bad update; return its L2 distance to `reference`."""
    check_names(update, reference)
    squared = 0.0
    for name, ref in reference.items():
        value = update[name]
        if value.dtype != ref.dtype:
            raise UpdateRejected(f"{name}: dtype {value.dtype}, expected {ref.dtype}")
        if value.shape != ref.shape:
            raise UpdateRejected(f"{name}: shape {value.shape}, expected {ref.shape}")
        if not np.isfinite(value).all():
            raise UpdateRejected(f"{name}: contains NaN or Inf")
        delta = value.astype(np.float64) - ref
        squared += float(np.dot(delta.ravel(), delta.ravel()))
    norm = squared**0.5
    if not norm <= max_update_norm:  # written so that a NaN norm fails too
        if math.isfinite(norm):
            raise UpdateRejected(f"update norm {norm:.4g} exceeds the bound {max_update_norm:.4g}")
        raise UpdateRejected(f"update norm is {norm}: the global weights are not finite")
    return norm


def check_names(update: Mapping[str, object], reference: Mapping[str, object]) -> None:
    """Raise `UpdateRejected` unless `update` has exactly the weight names of `reference`."""
    missing = [name for name in reference if name not in update]
    extra = [name for name in update if name not in reference]
    if missing or extra:
        raise UpdateRejected(f"weight names differ: missing {missing[:3]}, unexpected {extra[:3]}")


def check_examples(value: object, cap: float, key: str) -> float:
    """A node's own example count, which weights its update: finite, > 0 and <= `cap`.

    `cap` is what the server asked for (local-steps x batch-size for training, eval-batches
    x batch-size for evaluation), the most a ClientApp of this release can report: it counts
    the samples of at most that many batches of at most that size. A count over the cap is
    rejected, not clipped: an honest node cannot send it, so the node is not running the
    release as configured, and clipping would still hand it the largest weight of the round.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UpdateRejected(f"'{key}' is {value!r}, not a number")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise UpdateRejected(f"'{key}' is {value}, must be finite and positive")
    if value > cap:
        raise UpdateRejected(f"'{key}' is {value:g}, more than the {cap:g} the server asked for")
    return value


def metric_problem(value: float) -> str | None:
    """Why a reported figure is unusable (not finite, outside `METRIC_RANGE`), or None."""
    low, high = METRIC_RANGE
    if not math.isfinite(value):
        return f"{value} is not finite"
    if not low <= value < high:
        return f"{value:g} is outside [{low:g}, {high:g})"
    return None
