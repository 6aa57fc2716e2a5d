"""Check a client's update before it can touch the global model.

An update must carry exactly the trainable weights the server sent (same names, shapes and
dtypes), all finite, and must not move the model further than `max_update_norm` (L2 norm
of the difference to the global weights). Anything else is rejected with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class UpdateRejected(ValueError):
    """A client update that fails validation; the message says why."""


def validate_update(
    update: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    max_update_norm: float,
) -> float:
    """Raise `UpdateRejected` for a bad update; return its L2 distance to `reference`."""
    missing = [name for name in reference if name not in update]
    extra = [name for name in update if name not in reference]
    if missing or extra:
        raise UpdateRejected(f"weight names differ: missing {missing[:3]}, unexpected {extra[:3]}")
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
    if norm > max_update_norm:
        raise UpdateRejected(f"update norm {norm:.4g} exceeds the bound {max_update_norm:.4g}")
    return norm
