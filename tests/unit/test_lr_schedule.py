"""The learning-rate schedule over a federated run: its values, how rounds map to its steps,
the rates a node's optimizer really uses in round r, and a fresh optimizer every round."""

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from lerobot.datasets.factory import resolve_delta_timestamps

from zk0.client_app import app as client_app
from zk0.config import ConfigError, FederationSettings
from zk0.data.loading import open_dataset
from zk0.federation import protocol as wire
from zk0.model.factory import build_processors
from zk0.model.weights import get_trainable_arrays, set_trainable_arrays, to_array_record
from zk0.node import NodeTrainer
from zk0.training.local import train_steps
from zk0.training.schedule import LRSchedule, round_first_step

REPO = Path(__file__).resolve().parents[2]
COSINE = {"lr-schedule": "cosine", "num-server-rounds": 5, "local-steps": 4, "lr-warmup-steps": 3, "lr-min-ratio": 0.1}


def test_cosine_warms_up_from_near_zero_peaks_then_ends_at_the_floor():
    s = LRSchedule("cosine", total_steps=100, warmup_steps=10, min_ratio=0.1)
    factors = [s.factor(i) for i in range(101)]
    assert factors[0] == pytest.approx(1 / 11)  # lerobot's warm-up starts at 1 / (warmup + 1)
    assert factors[5] == pytest.approx(1 / 11 + (1 - 1 / 11) * 5 / 10)  # linear
    # The peak is where warm-up ends; lerobot's cosine counts from step 0, so it is just under 1.
    assert max(factors) == factors[10] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 10 / 100)))
    assert factors[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.55)))
    assert factors[100] == pytest.approx(0.1)  # end = the min ratio
    assert s.factor(500) == pytest.approx(0.1)  # past the end it stays at the floor
    assert np.all(np.diff(factors[:11]) > 0) and np.all(np.diff(factors[10:]) < 0)


def test_without_warm_up_cosine_starts_at_the_peak_and_constant_is_flat():
    assert LRSchedule("cosine", total_steps=40, min_ratio=0.0).factor(0) == 1.0
    assert LRSchedule("cosine", total_steps=40, min_ratio=0.0).factor(20) == pytest.approx(0.5)
    assert [LRSchedule("constant", total_steps=40).factor(i) for i in (0, 20, 39)] == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
        LRSchedule("linear", total_steps=40)


def test_rounds_tile_the_runs_global_steps():
    assert [round_first_step(r, 20) for r in (1, 2, 3)] == [0, 20, 40]
    with pytest.raises(ValueError, match="counts them from 1"):
        round_first_step(0, 20)
    s = LRSchedule("cosine", total_steps=5 * 4, warmup_steps=3, min_ratio=0.1)
    by_round = [f for r in range(1, 6) for f in s.round_factors(r, 4)]
    assert by_round == [s.factor(i) for i in range(20)]  # no gap, no overlap, in order


def test_settings_give_each_round_its_slice_of_one_schedule():
    settings = FederationSettings.from_run_config(COSINE)
    cfg = settings.train_config(3, 0.0)
    assert cfg.first_step == 8 and cfg.lr == settings.lr
    assert cfg.schedule == LRSchedule("cosine", total_steps=20, warmup_steps=3, min_ratio=0.1)
    constant = FederationSettings().train_config(3, 0.0)
    assert constant.schedule is None and constant.first_step == 2 * FederationSettings().local_steps


def test_the_default_is_the_constant_rate_pyproject_says():
    defaults = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert defaults["lr-schedule"] == FederationSettings().lr_schedule == "constant"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lr-schedule": "linear"}, "'lr-schedule' = 'linear' should be one of 'constant', 'cosine': set e.g."),
        ({"lr-min-ratio": 1.5}, "'lr-min-ratio' = 1.5 should be a fraction of lr between 0 and 1"),
        ({"lr-warmup-steps": -1}, "'lr-warmup-steps' = -1 should be at least 0"),
        ({**COSINE, "lr-warmup-steps": 20}, r"fewer than the run's 20 steps \(num-server-rounds x local-steps\)"),
    ],
)
def test_bad_schedule_settings_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        FederationSettings.from_run_config(overrides)


@pytest.fixture
def node_data(tiny_policy, synth_meta, synth_dataset):
    pre, _ = build_processors(tiny_policy.config, synth_meta.stats, "cpu")
    train = open_dataset(
        f"local:{synth_dataset}", [0, 1, 2, 3, 4], resolve_delta_timestamps(tiny_policy.config, synth_meta)
    )
    return pre, train


def test_the_optimizer_trains_round_r_at_the_schedules_rates(tiny_policy, node_data):
    pre, train = node_data
    settings = FederationSettings.from_run_config({**COSINE, "lr": 2e-3, "batch-size": 4})
    result = train_steps(tiny_policy, pre, train, settings.train_config(2, 0.0))
    expected = [2e-3 * f for f in settings.lr_schedule_for_run().round_factors(2, 4)]
    assert result.lrs == pytest.approx(expected)  # read from the optimizer at each step
    assert len(set(result.lrs)) == 4  # round 2 is steps 4..7: the peak, then decay


@pytest.mark.usefixtures("flower_task_identity")
def test_a_client_in_round_r_reports_the_rates_it_trained_with(synth_dataset, tiny_policy, zk0_cache, monkeypatch):
    monkeypatch.setenv("ZK0_LABEL_SECRET", str(zk0_cache / "label-secret"))
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    config |= {**COSINE, "batch-size": 4, "device": "cpu", "transfer": wire.FP32}
    context = Context(
        run_id=1,
        node_id=7,
        node_config={"dataset-uri": f"local:{synth_dataset}"},
        state=RecordDict(),
        run_config=config,
    )
    records = {wire.SERVER_ROUND: 5, wire.PROXIMAL_MU: 0.0, wire.TRANSFER: wire.FP32}
    content = RecordDict(
        {wire.ARRAYS: to_array_record(get_trainable_arrays(tiny_policy)), wire.CONFIG: ConfigRecord(records)}
    )
    reply = client_app(Message(content=content, dst_node_id=7, message_type="train"), context)
    assert not reply.has_error(), reply.error
    settings = FederationSettings.from_run_config(config)
    last_round = [settings.lr * f for f in settings.lr_schedule_for_run().round_factors(5, 4)]
    assert reply.content[wire.METRICS][wire.LEARNING_RATE] == pytest.approx(np.mean(last_round))
    assert last_round[-1] == pytest.approx(settings.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 19 / 20))))


def test_each_round_starts_a_fresh_optimizer(synth_dataset, zk0_cache):
    """A node that trained round 1 trains round 2 exactly as one that did not: no AdamW
    moments (or anything else) carry over from the weights the aggregate replaced."""
    settings = FederationSettings.from_run_config({**COSINE, "batch-size": 4, "device": "cpu"})
    uri = f"local:{synth_dataset}"
    veteran = NodeTrainer(settings, uri)
    start = get_trainable_arrays(veteran.policy)
    round_1 = veteran.train(start, 1, 0.0).arrays
    assert round_1 is not None
    aggregate = {n: (a + start[n]) / 2 for n, a in round_1.items()}  # what the server might send back
    again = veteran.train(aggregate, 2, 0.0).arrays
    newcomer = NodeTrainer(settings, uri)
    set_trainable_arrays(newcomer.policy, start)  # same frozen part: same seed; trainable part replaced anyway
    fresh = newcomer.train(aggregate, 2, 0.0).arrays
    assert again is not None and fresh is not None
    for name in again:
        np.testing.assert_array_equal(again[name], fresh[name], err_msg=name)
    assert any(not np.array_equal(again[n], aggregate[n]) for n in again), "round 2 trained nothing"
