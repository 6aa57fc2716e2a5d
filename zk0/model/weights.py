"""The weights that travel: SmolVLA's trainable parameters, by name, in a stable order.

The frozen VLM is the same on every node and never crosses the network. Names come from
`named_parameters()` (a fixed order for a given architecture) and every exchange carries
them, so a receiver can check it got exactly the set it expects.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch


def trainable_names(policy: torch.nn.Module) -> list[str]:
    return [name for name, p in policy.named_parameters() if p.requires_grad]


def get_trainable_arrays(policy: torch.nn.Module) -> OrderedDict[str, np.ndarray]:
    """Copies of the trainable parameters as float32 numpy arrays, in stable order."""
    return OrderedDict(
        (name, p.detach().to("cpu", torch.float32).numpy().copy())
        for name, p in policy.named_parameters()
        if p.requires_grad
    )


def set_trainable_arrays(policy: torch.nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Load `arrays` into the trainable parameters; the name set and shapes must match exactly."""
    params = {name: p for name, p in policy.named_parameters() if p.requires_grad}
    missing = params.keys() - arrays.keys()
    extra = arrays.keys() - params.keys()
    if missing or extra:
        raise KeyError(
            f"trainable weights do not match the model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(extra)[:5]} (are server and node on the same model and zk0 version?)"
        )
    with torch.no_grad():
        for name, param in params.items():
            value = torch.as_tensor(np.asarray(arrays[name]))
            if tuple(value.shape) != tuple(param.shape):
                raise ValueError(f"weight {name}: shape {tuple(value.shape)} != model {tuple(param.shape)}")
            param.copy_(value.to(param.device, param.dtype))


def arrays_nbytes(arrays: dict[str, np.ndarray]) -> int:
    return sum(a.nbytes for a in arrays.values())


def to_array_record(arrays: dict[str, np.ndarray]):
    """Flower's ArrayRecord for `arrays`, keeping their order."""
    from flwr.app import Array, ArrayRecord

    return ArrayRecord(array_dict=OrderedDict((name, Array(value)) for name, value in arrays.items()))


def from_array_record(record) -> OrderedDict[str, np.ndarray]:
    return OrderedDict((name, array.numpy()) for name, array in record.items())
