"""The ServerApp and the ClientApp speak through `zk0.federation.protocol`: the messages
Flower's strategy builds carry its names, and no module that builds or reads a message
spells one itself. (The ClientApp's replies are checked in test_client_privacy.)"""

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord

from zk0.federation import protocol as wire
from zk0.federation.strategy import ValidatedFedProx
from zk0.model.weights import to_array_record

pytestmark = pytest.mark.usefixtures("flower_task_identity")

REPO = Path(__file__).resolve().parents[2]
WIRE_NAMES = {value for name, value in vars(wire).items() if name.isupper() and isinstance(value, str)}
# The modules that build or read messages; the ServerApp's round records reuse some names as
# JSON keys of their own, so it is held to the protocol by the simulation test instead.
MESSAGE_MODULES = ["zk0/client_app.py", "zk0/node.py", "zk0/federation/strategy.py"]


class TwoNodes:
    """What Flower's configure_train / configure_evaluate ask of the Grid."""

    def get_node_ids(self):
        return [1, 2]


def strategy() -> ValidatedFedProx:
    return ValidatedFedProx(
        min_train_nodes=2,
        min_evaluate_nodes=2,
        min_available_nodes=2,
        proximal_mu=0.1,
        max_update_norm=1.0,
        max_train_examples=1,
        max_eval_examples=1,
    )


def test_flowers_messages_carry_the_protocols_names():
    arrays = to_array_record(OrderedDict(w=np.zeros(3, np.float32)))
    train = list(strategy().configure_train(3, arrays, ConfigRecord({wire.EVAL_BEFORE_TRAIN: True}), TwoNodes()))
    evaluate = list(strategy().configure_evaluate(3, arrays, ConfigRecord(), TwoNodes()))
    assert len(train) == len(evaluate) == 2
    for msg in train + evaluate:
        assert set(msg.content.keys()) == {wire.ARRAYS, wire.CONFIG}
    for msg in train:
        config = dict(msg.content[wire.CONFIG])
        assert config == {wire.SERVER_ROUND: 3, wire.PROXIMAL_MU: 0.1, wire.EVAL_BEFORE_TRAIN: True}
    for msg in evaluate:
        assert dict(msg.content[wire.CONFIG]) == {wire.SERVER_ROUND: 3}


def test_the_strategy_reads_and_weights_by_the_protocols_names():
    s = strategy()
    assert (s.arrayrecord_key, s.configrecord_key, s.weighted_by_key) == (wire.ARRAYS, wire.CONFIG, wire.NUM_EXAMPLES)


def test_every_figure_a_reply_may_carry_is_a_protocol_name():
    assert wire.EVALUATE_METRICS <= wire.TRAIN_METRICS <= WIRE_NAMES
    assert wire.NUM_EXAMPLES in wire.EVALUATE_METRICS


@pytest.mark.parametrize("path", MESSAGE_MODULES)
def test_no_module_that_builds_or_reads_messages_spells_a_wire_name(path):
    text = (REPO / path).read_text()
    spelled = sorted(n for n in WIRE_NAMES if f'"{n}"' in text or f"'{n}'" in text)
    assert not spelled, f"{path} spells {spelled}: use zk0.federation.protocol"
