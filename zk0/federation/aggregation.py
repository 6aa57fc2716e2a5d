"""Weighted averaging that folds in one update at a time.

The server never holds N client copies: each validated update is added to one running
weighted sum and dropped, so peak memory stays near one update plus the sum, whatever
the number of clients.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np


class StreamingWeightedMean:
    def __init__(self) -> None:
        self._sum: OrderedDict[str, np.ndarray] | None = None
        self.total_weight = 0.0
        self.count = 0

    def add(self, arrays: Mapping[str, np.ndarray], weight: float) -> None:
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"aggregation weight must be finite and positive, got {weight}")
        if self._sum is None:
            self._sum = OrderedDict((name, value.astype(np.float32) * weight) for name, value in arrays.items())
        else:
            for name, value in arrays.items():
                # In place: no temporary the size of the whole model.
                self._sum[name] += np.multiply(value, weight, dtype=np.float32)
        self.total_weight += weight
        self.count += 1

    def result(self) -> OrderedDict[str, np.ndarray]:
        if self._sum is None:
            raise ValueError("no update was aggregated")
        return OrderedDict((name, total / self.total_weight) for name, total in self._sum.items())
