"""The zk0 ServerApp and ClientApp in one process, without Ray or a SuperLink.

`InProcessGrid` is the part of Flower's Grid the ServerApp uses (node ids, push, pull): it
answers each message by calling the ClientApp at once. Each node keeps one Flower `Context`
for the run, so its `state` persists across messages as on a SuperNode. Messages are not
serialized; the arrays inside them are (Flower's `Array` holds bytes), so what a node
decodes is what it would decode from the network.
"""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flwr.app import Context, Message, RecordDict

REPO = Path(__file__).resolve().parents[1]


def run_config(**overrides: Any) -> dict[str, Any]:
    """pyproject's run-config defaults (what `flwr run` sends) with `overrides`."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    return {**config, **overrides}


class InProcessGrid:
    def __init__(self, config: dict[str, Any], nodes: int) -> None:
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0  # the ServerApp's
        from zk0.config import FederationSettings
        from zk0.data.loading import resolve

        # Node i trains on virtual node i's dataset of `sim-datasets` (as in `make sim`), handed
        # over as the local copy a deployed node would name: these nodes run outside Ray.
        settings = FederationSettings.from_run_config(config)
        self.contexts = {
            i + 1: Context(
                run_id=1,
                node_id=i + 1,
                node_config={"dataset-uri": f"local:{resolve(settings.sim_dataset_for(i)).local_dir}"},
                state=RecordDict(),
                run_config=config,
            )
            for i in range(nodes)
        }
        self._replies: dict[str, Message] = {}

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        from zk0.client_app import app as client_app

        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = uuid.uuid4().hex  # the SuperLink's job
            self._replies[msg.metadata.message_id] = client_app(msg, self.contexts[msg.metadata.dst_node_id])
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]


def run_federation(config: dict[str, Any], nodes: int = 2) -> InProcessGrid:
    """One run of the zk0 ServerApp's main loop with `nodes` in-process ClientApps."""
    from zk0.server_app import main

    grid = InProcessGrid(config, nodes)
    main(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=config))  # type: ignore[arg-type]
    return grid
