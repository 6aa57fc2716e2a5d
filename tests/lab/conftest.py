"""The lab for the full-stack test: the same hosts, registry and playbooks as `make demo`.

The lab's names and addresses are fixed, so this replaces a demo lab that is up (its hosts;
the registry and its copy of the image are kept to save the push). Teardown always runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from lab import docker as d
from lab import hosts
from lab.config import LabConfig


def _skip_without_docker() -> None:
    if os.environ.get("ZK0_LAB_REQUIRED") == "1":
        return
    try:
        d.docker("info", timeout=30)
    except (d.LabError, OSError):
        pytest.skip("no Docker engine here (make test-lab sets it up)")
    if d.docker("image", "inspect", LabConfig().zk0_image, check=False).returncode != 0:
        pytest.skip("the zk0 image is not built (make test-lab builds it)")


@pytest.fixture(scope="session")
def lab() -> Iterator[LabConfig]:
    _skip_without_docker()
    cfg = LabConfig()
    # A fresh start: no hosts, no CA or node keys from an earlier lab.
    for host in (*cfg.hosts, cfg.spare):
        hosts.remove_host(cfg, host)
    if cfg.state_dir.exists():
        for part in ("pki", "fetched", "flwr", "ssh", "logs"):
            shutil.rmtree(cfg.state_dir / part, ignore_errors=True)
    try:
        hosts.up(cfg)
        yield cfg
    finally:
        hosts.down(cfg)
