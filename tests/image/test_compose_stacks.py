"""The Compose stacks in docker/compose on one Docker host (needs `docker compose` v2:
scripts/ensure-compose.sh). Server: TLS SuperLink with SuperNode auth comes up healthy, serves
its CA-signed certificate on the published port and keeps its state on the volume, with the
TLS key as a Compose secret (never in the command line or the environment). Client: a dataset
path that does not exist stops the SuperNode at once with the URI error in its logs, and the
restart policy gives up instead of looping.
"""

import json
import os
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from image_helpers import DOCKER, IMAGE, ROOT, docker

COMPOSE = ROOT / "docker" / "compose"
ZK0 = str(ROOT / ".venv" / "bin" / "zk0")
RUNTIME_UID = 49999


@pytest.fixture(scope="module", autouse=True)
def compose_v2(image):
    if docker("compose", "version", check=False).returncode != 0:
        if os.environ.get("ZK0_IMAGE_REQUIRED") == "1":
            pytest.fail("docker compose v2 missing (scripts/ensure-compose.sh)")
        pytest.skip("docker compose v2 missing (scripts/ensure-compose.sh)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def compose(project: str, files: list[str], env: dict[str, str], *args: str, timeout=300):
    command = [DOCKER, "compose", "-p", project]
    for name in files:
        command += ["-f", str(COMPOSE / name)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **env}, check=False,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    for args in (["pki", "ca", "--dir", str(directory)],
                 ["pki", "superlink-cert", "--dir", str(directory), "--san", "127.0.0.1"],
                 ["pki", "node-key", "--dir", str(directory)]):
        subprocess.run([ZK0, *args], check=True, capture_output=True, timeout=60)
    for key in ("superlink.key", "supernode.key"):
        os.chown(directory / key, RUNTIME_UID, RUNTIME_UID)  # what the roles do
        assert (directory / key).stat().st_mode & 0o077 == 0
    return directory


@pytest.fixture
def stack():
    started = []

    def up(files: list[str], env: dict[str, str]) -> str:
        project = f"zk0-test-{uuid.uuid4().hex[:8]}"
        started.append((project, files, env))
        result = compose(project, files, env, "up", "-d")
        assert result.returncode == 0, result.stderr
        return project

    yield up
    for project, files, env in started:
        compose(project, files, env, "down", "-v", "--timeout", "5")


def container_of(project: str, service: str) -> dict:
    name = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
                  "--filter", f"label=com.docker.compose.service={service}").stdout.split()[0]
    return json.loads(docker("inspect", name).stdout)[0]


def wait_for(predicate, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def test_server_stack_tls_auth_state(pki, stack):
    port = free_port()
    env = {"ZK0_IMAGE": IMAGE, "ZK0_CERTS_DIR": str(pki),
           "ZK0_TLS_KEY_FILE": str(pki / "superlink.key"),
           "ZK0_SUPERLINK_BIND": "127.0.0.1", "ZK0_SUPERLINK_PORT": str(port)}
    project = stack(["server.yml"], env)

    def healthy():
        return container_of(project, "superlink")["State"].get("Health", {}).get("Status") == "healthy"

    # The image's health check runs every 30 s; probe as it does, then wait for Docker's verdict.
    assert wait_for(healthy, 120, 2), docker("logs", container_of(project, "superlink")["Id"]).stderr[-3000:]
    info = container_of(project, "superlink")
    command = " ".join(info["Config"]["Cmd"] or []) + " " + " ".join(info["Args"])
    assert "--enable-supernode-auth" in command
    assert "--disable-runtime-dependency-installation" in command
    key_text = (pki / "superlink.key").read_text()
    assert "PRIVATE KEY" not in json.dumps(info) and key_text.strip() not in json.dumps(info)
    assert info["Config"]["User"] == "49999:49999"

    # TLS on the published port with a certificate the federation CA vouches for.
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")

    # State on the volume, owned by the runtime user.
    listing = docker("exec", info["Id"], "ls", "-ln", "/var/lib/zk0").stdout
    assert "superlink.db" in listing and f" {RUNTIME_UID} " in listing


def test_client_with_missing_dataset_fails_fast_without_hot_loop(pki, stack, tmp_path):
    dataset_dir = tmp_path / "datasets"
    dataset_dir.mkdir()
    env = {"ZK0_IMAGE": IMAGE, "ZK0_SUPERLINK": "127.0.0.1:9",
           "ZK0_CA_CERT": str(pki / "ca.pem"), "ZK0_NODE_KEY_FILE": str(pki / "supernode.key"),
           "ZK0_DATASET_DIR": str(dataset_dir),
           "ZK0_DATASET_URI": "local:/data/dataset/so100-does-not-exist"}
    project = stack(["client.yml"], env)

    def gave_up():
        state = container_of(project, "supernode")
        return state if state["State"]["Status"] == "exited" and state["RestartCount"] >= 3 else None

    # on-failure:3 with Docker's doubling restart delay: 4 short runs, then it stays down.
    info = wait_for(gave_up, 180, 2)
    assert info, container_of(project, "supernode")["State"]
    time.sleep(5)
    info = container_of(project, "supernode")
    assert info["State"]["Status"] == "exited" and info["RestartCount"] == 3
    assert info["State"]["ExitCode"] != 0
    logs = docker("logs", info["Id"])
    text = logs.stdout + logs.stderr
    assert "/data/dataset/so100-does-not-exist does not exist" in text, text[-2000:]
    assert "dataset-uri" in text
