"""Shared helpers of the image tier (a uniquely named module: tests/conftest.py exists too)."""

import os
import subprocess
from pathlib import Path

from zk0 import __version__ as VERSION  # the package metadata: what `make image` tags and labels

ROOT = Path(__file__).resolve().parents[2]
DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")
IMAGE = os.environ.get("ZK0_IMAGE_REF", f"zk0:{VERSION}")
# The stacks' health probes every 10 s (ZK0_HEALTH_INTERVAL, 30 s by default): each stack the
# tests start is healthy that much sooner.
STACK_ENV = {"ZK0_HEALTH_INTERVAL": "10s"}
PROXY_IMAGE = os.environ.get("ZK0_PROXY_IMAGE_REF", f"zk0-proxy:{VERSION}")


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=check)
