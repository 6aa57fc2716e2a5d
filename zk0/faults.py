"""Deliberate faults a node can be told to inject, to test the server's defences.

Set with node config `fault-injection=<kind>` on a test SuperNode; unset in production.
Faults poison the trained float32 weights before the run's `transfer` encodes them, so in a
bf16 or int8-delta run `wrong-dtype` is encoded like any update and `wrong-shape` fails on
the node; the others reach the server in every encoding.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

FAULTS = ("nan", "inf", "wrong-shape", "wrong-dtype", "missing-tensor", "huge-norm")


def inject_fault(arrays: OrderedDict[str, np.ndarray], kind: str) -> OrderedDict[str, np.ndarray]:
    if not kind:
        return arrays
    if kind not in FAULTS:
        raise ValueError(f"unknown fault-injection {kind!r}; choose one of {', '.join(FAULTS)}")
    poisoned = OrderedDict(arrays)
    name = next(iter(poisoned))
    value = poisoned[name].copy()
    if kind == "nan":
        value.flat[0] = np.nan
    elif kind == "inf":
        value.flat[0] = np.inf
    elif kind == "wrong-shape":
        value = np.zeros(value.size + 1, dtype=value.dtype)
    elif kind == "wrong-dtype":
        value = value.astype(np.float64)
    elif kind == "huge-norm":
        value = value + 1e6
    if kind == "missing-tensor":
        del poisoned[name]
    else:
        poisoned[name] = value
    return poisoned
