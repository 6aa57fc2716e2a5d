import numpy as np
import pytest
import torch
from lerobot.datasets.factory import resolve_delta_timestamps

from zk0.data.loading import open_dataset
from zk0.model.factory import build_processors
from zk0.model.weights import get_trainable_arrays
from zk0.training.local import TrainConfig, evaluate_loss, proximal_term, train_steps


def test_proximal_term_is_the_squared_distance_to_the_anchor():
    a = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    b = [torch.tensor([0.0, 0.0]), torch.tensor([[1.0]])]
    assert proximal_term(a, b).item() == pytest.approx(1 + 4 + 4)
    assert proximal_term(a, a).item() == 0.0


@pytest.fixture
def node(tiny_policy, synth_meta, synth_dataset):
    pre, _ = build_processors(tiny_policy.config, synth_meta.stats, "cpu")
    delta = resolve_delta_timestamps(tiny_policy.config, synth_meta)
    train = open_dataset(f"local:{synth_dataset}", [0, 1, 2, 3, 4], delta)
    held_out = open_dataset(f"local:{synth_dataset}", [5], delta)
    return tiny_policy, pre, train, held_out


def distance(a, b):
    return float(np.sqrt(sum(((a[n] - b[n]) ** 2).sum() for n in a)))


def test_training_loss_falls_across_local_steps(node):
    policy, pre, train, _ = node
    result = train_steps(policy, pre, train, TrainConfig(local_steps=40, batch_size=8, lr=1e-3))
    assert len(result.losses) == 40 and result.num_examples == 320
    assert np.mean(result.losses[-10:]) < 0.8 * np.mean(result.losses[:10]), result.losses


def test_proximal_term_keeps_weights_near_the_global_model(node, tiny_model_config, synth_meta):
    from zk0.model.factory import build_policy

    policy, pre, train, _ = node
    start = get_trainable_arrays(policy)
    train_steps(policy, pre, train, TrainConfig(local_steps=15, batch_size=4, lr=1e-3, proximal_mu=0.0))
    free = distance(get_trainable_arrays(policy), start)
    anchored_policy = build_policy(tiny_model_config, synth_meta)
    train_steps(anchored_policy, pre, train, TrainConfig(local_steps=15, batch_size=4, lr=1e-3, proximal_mu=50.0))
    anchored = distance(get_trainable_arrays(anchored_policy), start)
    assert anchored < free


def test_evaluation_is_deterministic(node):
    policy, pre, _, held_out = node
    first = evaluate_loss(policy, pre, held_out, batch_size=4, seed=3, max_batches=3)
    assert first == evaluate_loss(policy, pre, held_out, batch_size=4, seed=3, max_batches=3)
    assert first[1] == 12 and np.isfinite(first[0])
