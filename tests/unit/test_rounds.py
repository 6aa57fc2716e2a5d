"""One message per node per round: the train reply scores the received weights; evaluate
messages, server eval and checkpoints only when the run config says they are due."""

from collections import OrderedDict

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

from zk0.config import ConfigError, FederationSettings
from zk0.federation import protocol as wire
from zk0.federation.rounds import RoundPlan
from zk0.federation.strategy import ValidatedFedProx
from zk0.model.weights import to_array_record

pytestmark = pytest.mark.usefixtures("flower_task_identity")

REF = OrderedDict(w=np.zeros((3, 2), np.float32))
BASE = {"num-server-rounds": 5, "local-steps": 1, "lr": 1e-3, "model": "tiny"}


def plan(**overrides) -> RoundPlan:
    config = {**BASE, **overrides}
    return RoundPlan.from_settings(FederationSettings.from_run_config(config))


def test_evaluate_messages_are_off_by_default_and_every_n_when_asked():
    assert not any(plan().evaluate_messages(r) for r in range(1, 6))
    assert [r for r in range(1, 6) if plan(**{"client-eval-every": 2}).evaluate_messages(r)] == [2, 4]
    assert all(plan(**{"client-eval-every": 1}).evaluate_messages(r) for r in range(1, 6))


@pytest.mark.parametrize("key", ["client-eval-every", "server-eval-every", "checkpoint-every"])
def test_a_negative_every_is_refused_not_read_as_zero(key):
    with pytest.raises(ConfigError, match=f"'{key}' = -1"):
        plan(**{key: -1})


def test_server_eval_and_checkpoint_always_cover_the_last_round():
    p = plan(**{"server-eval-every": 2, "checkpoint-every": 0})
    assert [r for r in range(1, 6) if p.server_eval(r)] == [2, 4, 5]
    assert [r for r in range(1, 6) if p.checkpoint(r)] == [5]


def train_reply(label, examples, metrics, node_id):
    content = RecordDict(
        {
            wire.ARRAYS: to_array_record(OrderedDict(w=np.full((3, 2), 0.1, np.float32))),
            wire.METRICS: MetricRecord({wire.NUM_EXAMPLES: float(examples), wire.TRAIN_LOSS: 1.0, **metrics}),
            wire.NODE: ConfigRecord({wire.DATASET_LABEL: label}),
        }
    )
    msg = Message(content=content, dst_node_id=node_id, message_type="train")
    return Message(content=content, reply_to=msg)


def test_scores_of_the_received_weights_are_weighted_by_eval_examples():
    strategy = ValidatedFedProx(
        min_train_nodes=1,
        min_available_nodes=1,
        proximal_mu=0.0,
        max_update_norm=10.0,
        max_train_examples=100,
        max_eval_examples=8,
    )
    replies = [
        train_reply("ds-a", 100, {wire.EVAL_LOSS: 1.0, wire.EVAL_NUM_EXAMPLES: 1.0}, node_id=1),
        train_reply("ds-b", 1, {wire.EVAL_LOSS: 4.0, wire.EVAL_NUM_EXAMPLES: 3.0}, node_id=2),
        train_reply("ds-old", 5, {}, node_id=3),  # a node that was not asked (or an older ClientApp)
    ]
    _, report = strategy.aggregate_stream(1, replies, REF)
    scores = report.evaluations_before_train()
    assert {c[wire.DATASET_LABEL] for c in scores.clients.values()} == {"ds-a", "ds-b"}
    assert scores.mean(wire.EVAL_LOSS) == pytest.approx((1.0 * 1 + 4.0 * 3) / 4)
