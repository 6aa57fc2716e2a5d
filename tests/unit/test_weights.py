import numpy as np
import pytest

from zk0.model.factory import build_policy
from zk0.model.weights import (
    arrays_nbytes,
    from_array_record,
    get_trainable_arrays,
    set_trainable_arrays,
    to_array_record,
    trainable_names,
)


def test_only_trainable_parameters_travel_and_the_frozen_vlm_does_not(tiny_policy):
    arrays = get_trainable_arrays(tiny_policy)
    trainable = sum(p.numel() for p in tiny_policy.parameters() if p.requires_grad)
    total = sum(p.numel() for p in tiny_policy.parameters())
    assert arrays_nbytes(arrays) == 4 * trainable < 4 * total
    assert not any(".vlm." in name for name in arrays), "frozen VLM weights must stay on the node"
    assert all(a.dtype == np.float32 for a in arrays.values())


def test_name_order_is_stable_and_frozen_weights_agree_across_builds(tiny_model_config, synth_meta, tiny_policy):
    other = build_policy(tiny_model_config, synth_meta)
    assert trainable_names(other) == trainable_names(tiny_policy)
    frozen_a = {n: p for n, p in tiny_policy.named_parameters() if not p.requires_grad}
    frozen_b = {n: p for n, p in other.named_parameters() if not p.requires_grad}
    assert frozen_a.keys() == frozen_b.keys()
    assert all(frozen_a[n].equal(frozen_b[n]) for n in frozen_a)


def test_round_trip_through_flower_array_record(tiny_policy, tiny_model_config, synth_meta):
    rng = np.random.default_rng(0)
    arrays = {n: rng.standard_normal(a.shape).astype(np.float32) for n, a in get_trainable_arrays(tiny_policy).items()}
    record = to_array_record(arrays)
    assert list(record.keys()) == list(arrays)
    target = build_policy(tiny_model_config, synth_meta)
    set_trainable_arrays(target, from_array_record(record))
    loaded = get_trainable_arrays(target)
    assert all(np.array_equal(loaded[n], arrays[n]) for n in arrays)


def test_loading_rejects_missing_extra_and_misshaped_weights(tiny_policy):
    arrays = get_trainable_arrays(tiny_policy)
    name = next(iter(arrays))
    with pytest.raises(KeyError, match="missing"):
        set_trainable_arrays(tiny_policy, {k: v for k, v in arrays.items() if k != name})
    with pytest.raises(KeyError, match="unexpected"):
        set_trainable_arrays(tiny_policy, {**arrays, "intruder": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match="shape"):
        set_trainable_arrays(tiny_policy, {**arrays, name: np.zeros(3, np.float32)})
