"""How a ClientApp knows it is a virtual node: Flower's simulation engine runs each virtual
node's ClientApp in a Ray actor, so there (and only there) `in_virtual_node` holds and the
node's dataset comes from `sim-datasets`. Checked in a real Ray actor."""

from __future__ import annotations

import pytest

from zk0.simulation import in_virtual_node

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_ray_actor_is_a_virtual_node_and_its_driver_is_not(monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_raylet_start_wait_time_s", "120")  # a loaded CI machine starts Ray slowly

    class Node:  # defined here: Ray ships it to the worker by value
        def probe(self, partition_id: int) -> tuple[bool, str]:
            from zk0.config import FederationSettings
            from zk0.simulation import in_virtual_node, virtual_node_dataset_uri

            settings = FederationSettings(sim_datasets="synthetic:a,synthetic:b")
            node_config = {"partition-id": partition_id, "num-partitions": 3}
            return in_virtual_node(), virtual_node_dataset_uri(node_config, settings)

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        actor = ray.remote(num_cpus=1)(Node).remote()
        assert ray.get(actor.probe.remote(2)) == (True, "synthetic:a")
        assert in_virtual_node() is False  # the driver (the engine itself) runs no ClientApp
    finally:
        ray.shutdown()
    assert in_virtual_node() is False
