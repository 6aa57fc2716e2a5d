"""A local simulation SuperLink for `flwr run . local-sim`, without run-time installs.

`flwr run` against a `:local:` connection starts a simulation SuperLink on its own, and
that one installs the app's dependencies into a fresh environment for every run (`uv sync`,
minutes, and online). zk0's environment already has everything, so `zk0 sim start` runs
that SuperLink itself with `--disable-runtime-dependency-installation` on the port `flwr`
looks for, and writes the `local-sim` connection; `flwr` then finds it and uses it.

Virtual nodes have no node config of their own beyond Flower's `partition-id`: each takes
its dataset from run config `sim-datasets` (`virtual_node_dataset_uri`), while a deployed
SuperNode reads its own `dataset-uri` (zk0.node.node_dataset_uri).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zk0.deploy.connection import flwr_home, update_connection
from zk0.deploy.launch import flower_bin, flower_env, start, wait_for_port

if TYPE_CHECKING:  # zk0.config loads torch; the sim CLI commands need none of it
    from zk0.config import FederationSettings

LOCAL_ADDRESS = ":local:"  # flwr's marker for "the local simulation SuperLink"


def local_superlink_port() -> int:
    """The port flwr looks for the local SuperLink on (its variable, its default)."""
    return int(os.environ.get("FLWR_LOCAL_SUPERLINK_HTTP_API_PORT", "39091"))


def in_virtual_node() -> bool:
    """Whether this ClientApp runs as a virtual node of Flower's simulation engine, which runs
    every virtual node's ClientApp inside a Ray actor; a deployed SuperNode never starts Ray."""
    ray = sys.modules.get("ray")  # imported by the engine long before any ClientApp runs
    if ray is None:
        return False
    try:
        return bool(ray.is_initialized() and ray.get_runtime_context().get_actor_id())
    except Exception:  # noqa: BLE001 - any doubt means "not simulated": the strict path
        return False


def virtual_node_dataset_uri(node_config: dict[str, Any], settings: FederationSettings) -> str:
    """A virtual node's dataset: entry `partition-id` mod N of run config `sim-datasets`."""
    from zk0.config import ConfigError

    partition = str(node_config.get("partition-id", ""))
    if not partition.isdigit():
        raise ConfigError(
            f"virtual node has partition-id {node_config.get('partition-id')!r}, not a whole number: "
            "Flower's simulation engine sets it for every virtual node"
        )
    return settings.sim_dataset_for(int(partition))


def write_sim_connection(name: str, home: Path | None = None) -> Path:
    """Add `[superlink.<name>]` pointing at the local simulation SuperLink."""
    return update_connection(name, {"address": LOCAL_ADDRESS}, home, make_default=False)


def configure_simulation(
    connection: str, num_supernodes: int, cpus_per_node: int, gpus_per_node: float, home: Path | None = None
) -> str:
    """Set the virtual nodes and their resources on the SuperLink's simulation federation
    (stored in its database, so it holds for every later `flwr run`)."""
    env = flower_env(Path(home) if home else flwr_home())
    flwr = flower_bin("flwr")
    listing = subprocess.run(
        [flwr, "federation", "ls", connection, "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    federations = [f["id"] for f in json.loads(listing.stdout)["federations"] if f.get("simulation")]
    if not federations:
        raise RuntimeError(f"SuperLink behind '{connection}' has no simulation federation")
    subprocess.run(
        [
            flwr,
            "federation",
            "simulation-config",
            federations[0],
            connection,
            "--num-supernodes",
            str(num_supernodes),
            "--client-resources-num-cpus",
            str(cpus_per_node),
            "--client-resources-num-gpus",
            str(gpus_per_node),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return federations[0]


def _state_dir(home: Path) -> Path:
    return home / "zk0-sim"


def start_sim_superlink(home: Path | None = None, port: int | None = None, timeout: float = 60) -> int:
    """Start the simulation SuperLink unless one answers already; return its pid (0 if reused)."""
    home = Path(home) if home else flwr_home()
    port = port or local_superlink_port()
    state = _state_dir(home)
    try:
        wait_for_port("127.0.0.1", port, timeout=0.5)
        return 0
    except TimeoutError:
        pass
    argv = [
        flower_bin("flower-superlink"),
        "--insecure",
        "--simulation",
        "--isolation",
        "subprocess",
        "--disable-runtime-dependency-installation",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),  # Control, Fleet and Runtime APIs share it
        "--database",
        str(state / "state.db"),
    ]
    process = start("sim-superlink", argv, state, flower_env(home))
    try:
        wait_for_port("127.0.0.1", port, timeout=timeout, process=process)
    except (TimeoutError, RuntimeError):
        process.stop()  # never leave a half-started SuperLink behind
        raise
    (state / "superlink.pid").write_text(str(process.pid))
    return process.pid


def stop_sim_superlink(home: Path | None = None) -> bool:
    """Stop the SuperLink `start_sim_superlink` started; False if none was running."""
    pid_file = _state_dir(Path(home) if home else flwr_home()) / "superlink.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    pid_file.unlink()
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True
