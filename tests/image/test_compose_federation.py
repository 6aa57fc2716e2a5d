"""A federation from the Compose stacks on one Docker host: the server stack and two client
stacks (tiny SmolVLA, synthetic SO-100 datasets, TLS + SuperNode auth), one round submitted by
the admin with `flwr run` from the host; it must finish with a checkpoint and per-round
metrics on the server's outputs volume.

The client containers reach the SuperLink through the host's docker0 address, where the
server stack publishes its port (the SuperLink certificate names that address).
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from image_helpers import DOCKER, IMAGE, PROXY_IMAGE, ROOT, STACK_ENV, docker

COMPOSE = ROOT / "docker" / "compose"
RUNTIME_UID = 49999
CONNECTION = "zk0-compose-test"
RUN = {
    "model": "tiny",
    "local-steps": 3,
    "batch-size": 4,
    "eval-batches": 1,
    "min-nodes": 2,
    "num-server-rounds": 1,
    "output-dir": "/home/zk0/outputs",
    "run-name": "compose",
}

pytestmark = pytest.mark.timeout(900)


def compose(project: str, file: str, env: dict[str, str], *args: str, timeout=300):
    return subprocess.run(
        [DOCKER, "compose", "-p", project, "-f", str(COMPOSE / file), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **STACK_ENV, **env},
        check=False,
    )


def docker0_address() -> str:
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[3].split("/")[0]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> str:
    """The node's /metrics text (zk0-supernode's listener, through the stack's published port)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def container_id(project: str, service: str) -> str:
    return docker(
        "ps",
        "-aq",
        "--filter",
        f"label=com.docker.compose.project={project}",
        "--filter",
        f"label=com.docker.compose.service={service}",
    ).stdout.split()[0]


def test_one_round_across_two_client_stacks(image, tmp_path):
    if docker("compose", "version", check=False).returncode != 0:
        pytest.skip("docker compose v2 missing (scripts/ensure-compose.sh)")
    from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset
    from zk0.deploy import admin_auth, connection, enrollment, launch, pki
    from zk0.deploy.loopback import flwr_json

    host = docker0_address()
    port, admin_port, server_metrics_port = free_port(), free_port(), free_port()
    creds = tmp_path / "pki"
    pki.create_ca(creds / "ca")
    server = pki.create_superlink_cert(creds / "superlink", [host], creds / "ca")
    admin_auth.write_token(creds / "superlink" / "admin.token")
    (creds / "superlink" / "superexec.secret").write_bytes(os.urandom(32))
    for secret in (server.key, creds / "superlink" / "admin.token", creds / "superlink" / "superexec.secret"):
        Path(secret).chmod(0o600)
        os.chown(secret, RUNTIME_UID, RUNTIME_UID)
    tag = uuid.uuid4().hex[:6]
    started: list[tuple[str, str, dict]] = []
    metrics_ports: dict[str, int] = {}
    admin_home = tmp_path / "admin"
    admin_env = launch.flower_env(admin_home)
    try:
        server_env = {
            "ZK0_IMAGE": IMAGE,
            "ZK0_PROXY_IMAGE": PROXY_IMAGE,
            "ZK0_CERTS_DIR": str(server.cert.parent),
            "ZK0_TLS_KEY_FILE": str(server.key),
            "ZK0_SUPERLINK_BIND": host,
            "ZK0_ADMIN_TOKEN_FILE": str(creds / "superlink" / "admin.token"),
            "ZK0_SUPEREXEC_SECRET_FILE": str(creds / "superlink" / "superexec.secret"),
            "ZK0_ADMIN_BIND": "127.0.0.1",
            "ZK0_ADMIN_PORT": str(admin_port),
            "ZK0_SUPERLINK_PORT": str(port),
            "ZK0_METRICS_PORT": str(server_metrics_port),  # the monitor's, on the host's loopback
            "ZK0_HF_HUB_OFFLINE": "1",
        }
        # server.yml mounts ca.pem from ZK0_CERTS_DIR next to superlink.pem
        (server.cert.parent / "ca.pem").write_bytes(server.ca_cert.read_bytes())
        project = f"zk0-fed-{tag}-server"
        started.append((project, "server.yml", server_env))
        result = compose(project, "server.yml", server_env, "up", "-d")
        assert result.returncode == 0, result.stderr
        launch.wait_for_port(host, port, 180)
        # The admin reaches the Control API on the proxy's admin listener, with the token.
        connection.write_connection(CONNECTION, f"127.0.0.1:{admin_port}", server.ca_cert, home=admin_home)
        admin_auth.login(CONNECTION, admin_auth.read_token(creds / "superlink" / "admin.token"), home=admin_home)

        for index, name in enumerate(("a", "b"), start=1):
            key = pki.create_node_key(creds / "nodes" / name)
            os.chown(key.private_key, RUNTIME_UID, RUNTIME_UID)
            old = os.environ.get("FLWR_HOME")
            os.environ["FLWR_HOME"] = str(admin_home)
            try:
                deadline = time.monotonic() + 120
                while True:  # the Control API may answer a little after the port opens
                    try:
                        enrollment.register(key.public_key, CONNECTION)
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(3)
            finally:
                if old is None:
                    os.environ.pop("FLWR_HOME", None)
                else:
                    os.environ["FLWR_HOME"] = old
            dataset = write_synthetic_dataset(
                tmp_path / "datasets" / name,
                SyntheticDatasetConfig(episodes=4, frames_per_episode=20, seed=index),
            )
            subprocess.run(["chmod", "-R", "a+rX", str(tmp_path)], check=True)
            client_env = {
                "ZK0_IMAGE": IMAGE,
                "ZK0_SUPERLINK": f"{host}:{port}",
                "ZK0_CA_CERT": str(server.ca_cert),
                "ZK0_NODE_KEY_FILE": str(key.private_key),
                "ZK0_DATASET_DIR": str(dataset),
                "ZK0_HF_HUB_OFFLINE": "1",
                "ZK0_NODE_METRICS_PORT": str(metrics_ports.setdefault(name, free_port())),  # one per stack
            }
            project = f"zk0-fed-{tag}-client-{name}"
            started.append((project, "client.yml", client_env))
            result = compose(project, "client.yml", client_env, "up", "-d")
            assert result.returncode == 0, result.stderr

        submitted = flwr_json(
            ["run", str(ROOT), CONNECTION, "--run-config", launch.format_node_config(RUN)], admin_env, timeout=300
        )
        assert submitted.get("success"), submitted
        run_id = int(submitted["run-id"])
        deadline = time.monotonic() + 720
        info: dict = {}
        while time.monotonic() < deadline:
            listing = flwr_json(["ls", CONNECTION, "--run-id", str(run_id)], admin_env)
            info = listing.get("runs", [{}])[0]
            if str(info.get("status", "")).startswith("finished"):
                break
            time.sleep(5)
        server_id = container_id(f"zk0-fed-{tag}-server", "superexec")  # ServerApps run (and write) here
        logs = docker("logs", "--tail", "60", server_id, check=False)
        if info.get("status") != "finished:completed":  # the ServerApp's own story
            flwr_log = subprocess.run(
                [str(Path(sys.executable).parent / "flwr"), "log", str(run_id), CONNECTION, "--show"],
                env=admin_env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            pytest.fail(f"run {info}\nflwr log:\n{flwr_log.stdout[-6000:]}\nSuperExec:\n{logs.stdout[-3000:]}")

        found = docker(
            "exec",
            server_id,
            "sh",
            "-c",
            "ls /home/zk0/outputs/compose/checkpoints/round_1/model.safetensors && "
            "cat /home/zk0/outputs/compose/metrics/round_1.json",
        ).stdout
        assert "model.safetensors" in found
        metrics = json.loads(found[found.index("{") :])
        assert len(metrics["train"]["clients"]) == 2, metrics
        served = scrape(server_metrics_port)  # the server's monitor: round files and the database, read-only
        assert 'zk0_run_last_round{run="compose"} 1.0' in served and "zk0_superlink_nodes_enrolled 2.0" in served
        assert 'zk0_round_replies{outcome="accepted",phase="train",run="compose"} 2.0' in served, served
        for name in ("a", "b"):  # each message ran in a process forked from the warm pool
            node = docker("logs", container_id(f"zk0-fed-{tag}-client-{name}", "supernode"), check=False)
            assert "forked from the warm pool" in node.stdout + node.stderr, node.stderr[-2000:]
            scraped = scrape(metrics_ports[name])  # published on the host's loopback only
            assert "zk0_node_superlink_connected 1.0" in scraped, scraped
            assert "zk0_node_tasks_total 0.0" not in scraped and "zk0_node_last_train_duration_seconds " in scraped
            assert "dataset" not in scraped, scraped  # no path, repo id or host name in a label or value
    finally:
        for project, file, env in reversed(started):
            compose(project, file, env, "down", "-v", "--timeout", "5")
