"""Client replies made on demand, as they arrive from the network one at a time."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict


def fake_train_replies(reference: OrderedDict, clients: int) -> Iterator[Message]:
    from flwr.supercore.task_identity import TaskIdentity

    from zk0.federation import protocol as wire
    from zk0.model.weights import to_array_record

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    rng = np.random.default_rng(0)
    for client in range(clients):
        arrays = OrderedDict(
            (n, (ref + rng.standard_normal(ref.shape, dtype=np.float32) * 1e-3).astype(ref.dtype))
            for n, ref in reference.items()
        )
        content = RecordDict(
            {
                wire.ARRAYS: to_array_record(arrays),
                wire.METRICS: MetricRecord({wire.NUM_EXAMPLES: 32.0}),
                wire.NODE: ConfigRecord({wire.DATASET_LABEL: f"ds-bench-{client}"}),
            }
        )
        del arrays
        request = Message(content=RecordDict(), dst_node_id=client + 1, message_type="train")
        yield Message(content=content, reply_to=request)
