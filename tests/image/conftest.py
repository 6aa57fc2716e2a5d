"""Fixtures for the image tier: assertions on the built zk0 image (docker/Dockerfile).

`make test-image` builds the image first (cached) and sets ZK0_IMAGE_REQUIRED=1, so a missing
image or engine fails the tier instead of skipping it.
"""

import json
import os
import shutil

import pytest
from image_helpers import DOCKER, IMAGE, docker


@pytest.fixture(scope="session")
def image() -> str:
    required = os.environ.get("ZK0_IMAGE_REQUIRED") == "1"
    problem = None
    if not shutil.which(DOCKER):
        problem = f"no docker client at {DOCKER}"
    elif docker("info", check=False).returncode != 0:
        problem = "no Docker engine answers (scripts/ensure-docker.sh)"
    elif docker("image", "inspect", IMAGE, check=False).returncode != 0:
        problem = f"image {IMAGE} not built (make image)"
    if problem:
        if required:
            pytest.fail(problem)
        pytest.skip(problem)
    return IMAGE


@pytest.fixture(scope="session")
def inspect(image: str) -> dict:
    return json.loads(docker("image", "inspect", image).stdout)[0]


@pytest.fixture(scope="session")
def run_in(image: str):
    """Run a shell command in a throwaway container of the image (as its default user)."""

    def run(command: str, *, user: str | None = None, timeout: float = 180):
        args = ["run", "--rm", "--network", "none"]
        if user:
            args += ["--user", user]
        return docker(*args, image, "sh", "-c", command, timeout=timeout, check=False)

    return run
