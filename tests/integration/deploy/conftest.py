"""Fixtures for loopback deployment tests: real SuperLink/SuperNodes on 127.0.0.1, always cleaned up."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from zk0.deploy.loopback import Credentials, Loopback

REPO = Path(__file__).resolve().parents[3]
NUMPY_APP = REPO / "bench" / "numpy_app"


@pytest.fixture(autouse=True, scope="session")
def _flower_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No telemetry; a private FLWR_HOME so nothing touches the user's ~/.flwr."""
    old = {k: os.environ.get(k) for k in ("FLWR_TELEMETRY_ENABLED", "FLWR_HOME")}
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    os.environ["FLWR_HOME"] = str(tmp_path_factory.mktemp("flwr-home"))
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True, scope="session")
def _trusted_apps(release_hashes: dict[str, str]) -> None:
    """Every zk0-supernode started here trusts the apps the tests submit (tests/conftest.py)."""


@pytest.fixture(scope="session")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return Credentials(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def loopback(tmp_path: Path, creds: Credentials) -> Iterator[Loopback]:
    fed = Loopback(tmp_path, creds)
    try:
        yield fed
    finally:
        fed.close()
