"""ClientApp: returns the received array plus one, after an optional configurable delay."""

from __future__ import annotations

import time

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


def _node_tag(context: Context) -> int:
    return int(context.node_config.get("node-tag", -1))


@app.train()
def train(msg: Message, context: Context) -> Message:
    delay = float(context.run_config.get("train-seconds", 0.0))
    if delay > 0:
        time.sleep(delay)
    arrays = msg.content["arrays"].to_numpy_ndarrays()
    updated = [a + 1.0 for a in arrays]
    metrics = MetricRecord({"num-examples": 10, "node-tag": _node_tag(context)})
    return Message(RecordDict({"arrays": ArrayRecord(updated), "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    arrays = msg.content["arrays"].to_numpy_ndarrays()
    loss = float(np.mean([np.mean(a) for a in arrays]))
    metrics = MetricRecord({"num-examples": 10, "loss": loss, "node-tag": _node_tag(context)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
