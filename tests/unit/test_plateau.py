"""Reduce-on-plateau (zk0.federation.plateau): when the server lowers the nodes' learning rate
and raises FedProx's mu, what a round record keeps of it, the run config that turns it on, the
strategy sending the new mu, and a node that trains at the scale it is sent and refuses one
outside (0, 1] before any work."""

from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict

from zk0.client_app import NodeError
from zk0.client_app import app as client_app
from zk0.config import ConfigError, FederationSettings
from zk0.federation import protocol as wire
from zk0.federation.plateau import RECORD_KEY, Plateau
from zk0.federation.strategy import ValidatedFedProx
from zk0.model.weights import to_array_record


def plateau(patience: int = 2, floor: float = 0.0) -> Plateau:
    return Plateau(patience=patience, lr_factor=0.5, mu_factor=2.0, mu=0.01, min_lr_scale=floor)


def test_off_by_default_nothing_ever_changes():
    p = Plateau.from_settings(FederationSettings())
    assert p.patience == 0
    assert not any(p.observe(loss) for loss in [2.0, 3.0, 3.0, 3.0, math.nan])
    assert (p.lr_scale, p.mu) == (1.0, 0.01)


def test_patience_evaluations_without_a_new_best_halve_lr_and_double_mu():
    p = plateau(patience=2)
    changes = [p.observe(loss) for loss in [2.0, 1.9, 1.95, 1.91]]
    assert changes == [False, False, False, True]  # 1.95 and 1.91 are not below 1.9
    assert (p.lr_scale, p.mu, p.best, p.waited) == (0.5, 0.02, 1.9, 0)
    assert not p.observe(1.8)  # a new best starts the count again
    assert [p.observe(loss) for loss in [1.8, 1.8]] == [False, True]
    assert (p.lr_scale, p.mu) == (0.25, 0.04)


def test_a_change_in_the_last_digits_is_not_progress():
    p = plateau(patience=1)
    p.observe(2.0)
    assert p.observe(2.0 * (1 - 1e-6))


def test_a_loss_that_is_not_finite_counts_as_no_progress():
    p = plateau(patience=1)
    p.observe(2.0)
    assert p.observe(math.nan) and p.lr_scale == 0.5
    assert p.observe(math.inf) and p.lr_scale == 0.25


def test_the_scale_stops_at_the_floor():
    p = plateau(patience=1, floor=0.3)
    scales = []
    for loss in [1.0, 1.0, 1.0, 1.0]:
        p.observe(loss)
        scales.append(p.lr_scale)
    assert scales == [1.0, 0.5, 0.3, 0.3]
    assert p.mu == pytest.approx(0.08)  # mu keeps growing: the pull toward the global weights


def test_the_round_record_keeps_the_state_and_a_resume_reads_it_back():
    p = plateau(patience=3)
    for loss in [2.0, 2.1]:
        p.observe(loss)
    record = json.loads(json.dumps({"round": 4, RECORD_KEY: p.state()}))  # as written to round_4.json
    again = plateau(patience=3)
    again.restore(record)
    assert (again.lr_scale, again.mu, again.best, again.waited) == (p.lr_scale, p.mu, 2.0, 1)
    fresh = plateau()
    assert json.loads(json.dumps(fresh.state()))["best"] is None  # JSON has no infinity
    fresh.restore({"round": 2})  # a record from before plateaus existed: nothing changes
    assert (fresh.lr_scale, fresh.mu, fresh.best) == (1.0, 0.01, math.inf)


@pytest.mark.parametrize(
    "bad",
    [{"plateau-patience": -1}, {"plateau-lr-factor": 0.0}, {"plateau-lr-factor": 1.5}, {"plateau-mu-factor": 0.5}],
)
def test_the_run_config_refuses_factors_that_make_no_sense(bad):
    with pytest.raises(ConfigError, match=r"plateau-patience = .* the lr factor in \(0, 1\]"):
        FederationSettings.from_run_config(bad)


def test_the_nodes_learning_rate_is_the_runs_times_the_scale():
    settings = FederationSettings.from_run_config({"lr": 2e-3})
    assert settings.train_config(3, 0.01, 0.25).lr == pytest.approx(5e-4)
    assert settings.train_config(3, 0.01).lr == pytest.approx(2e-3)


@pytest.mark.usefixtures("flower_task_identity")
def test_the_strategy_sends_the_mu_the_server_set():
    strategy = ValidatedFedProx(
        min_train_nodes=1,
        min_evaluate_nodes=1,
        min_available_nodes=1,
        proximal_mu=0.01,
        max_update_norm=1.0,
        max_train_examples=1,
        max_eval_examples=1,
    )
    strategy.proximal_mu = 0.04  # what the round loop does after a plateau

    class OneNode:  # what configure_train asks of the Grid
        def get_node_ids(self):
            return [5]

    arrays = to_array_record(OrderedDict(w=np.zeros(2, np.float32)))
    (msg,) = strategy.configure_train(2, arrays, ConfigRecord({wire.LR_SCALE: 0.5}), OneNode())
    assert dict(msg.content[wire.CONFIG]) == {wire.SERVER_ROUND: 2, wire.PROXIMAL_MU: 0.04, wire.LR_SCALE: 0.5}


@pytest.mark.usefixtures("flower_task_identity")
@pytest.mark.parametrize("scale", [0.0, -0.5, 1.5, math.nan, True])
def test_a_node_refuses_a_scale_outside_zero_to_one_before_any_work(scale, caplog):
    """A crafted train message from a hostile or broken server: refused with the reason in the
    node's log, before the node opens its dataset or builds a model (its node config names none)."""
    config = ConfigRecord({wire.SERVER_ROUND: 1, wire.PROXIMAL_MU: 0.0, wire.TRANSFER: wire.FP32, wire.LR_SCALE: scale})
    content = RecordDict({wire.ARRAYS: to_array_record(OrderedDict(w=np.zeros(2, np.float32))), wire.CONFIG: config})
    context = Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})
    with caplog.at_level(logging.ERROR, logger="zk0.client"), pytest.raises(NodeError):  # the error reply
        client_app(Message(content=content, dst_node_id=7, message_type="train"), context)
    assert "lr-scale must be a number in (0, 1]" in caplog.text
    assert "dataset" not in caplog.text  # refused before the node looked for its data
