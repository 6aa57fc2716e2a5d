"""The image's HEALTHCHECK serves both roles through Flower's gRPC health service."""

import time
import uuid

import pytest
from image_helpers import docker


def wait_health(name: str, want: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()
        if status == want:
            break
        time.sleep(1)
    return status


@pytest.fixture
def container(image):
    names = []

    def start(*command: str) -> str:
        name = f"zk0-image-test-{uuid.uuid4().hex[:8]}"
        names.append(name)
        docker(
            "run",
            "-d",
            "--init",
            "--name",
            name,
            "--health-interval=2s",
            "--health-start-period=1s",
            "--health-retries=2",
            image,
            *command,
        )
        return name

    yield start
    for name in names:
        docker("rm", "-f", name, check=False)


def test_superlink_becomes_healthy(container):
    name = container("flower-superlink", "--insecure", "--health-server-address", "127.0.0.1:8081")
    assert wait_health(name, "healthy") == "healthy", docker("logs", name).stderr[-2000:]


def test_supernode_becomes_healthy_and_its_clientapp_pool_warm(container):
    # zk0-supernode, as the client stack runs it: Flower's SuperNode plus the warm ClientApp
    # pool, whose preload (torch, lerobot) must work offline from the image alone.
    name = container(
        "zk0-supernode", "--insecure", "--superlink", "127.0.0.1:8000", "--health-server-address", "127.0.0.1:8081"
    )
    assert wait_health(name, "healthy") == "healthy", docker("logs", name).stderr[-2000:]
    deadline = time.monotonic() + 120
    while "ClientApp pool warm" not in (logs := docker("logs", name).stderr) and time.monotonic() < deadline:
        time.sleep(2)
    assert "ClientApp pool warm" in logs, logs[-2000:]


def test_without_health_server_it_is_unhealthy(container):
    name = container("flower-superlink", "--insecure")
    assert wait_health(name, "unhealthy") == "unhealthy"
