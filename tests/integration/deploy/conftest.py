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


@pytest.fixture(scope="session")
def release_fab() -> bytes:
    """The FAB `flwr run REPO` uploads (built once: walking the checkout takes a while)."""
    from zk0.supernode import trust

    return trust.build_fab(REPO)


@pytest.fixture(autouse=True, scope="session")
def release_hashes(tmp_path_factory: pytest.TempPathFactory, release_fab: bytes) -> Iterator[dict[str, str]]:
    """zk0-supernode runs only apps on its allowlist: every node started here trusts the apps
    the tests submit (this checkout's zk0 app and the numpy app), by their hash as
    `zk0 app hash` computes it, once per session."""
    from zk0.supernode import trust

    hashes = {"zk0": trust.fab_sha256(release_fab), "numpy": trust.app_hash(NUMPY_APP)}
    allowlist = tmp_path_factory.mktemp("trust") / "trusted-apps.txt"
    allowlist.write_text("".join(f"# {name}\n{digest}\n" for name, digest in hashes.items()))
    old = {k: os.environ.get(k) for k in (trust.FILE_ENV, trust.HASHES_ENV)}
    os.environ[trust.FILE_ENV] = str(allowlist)  # every process inherits it (launch.flower_env)
    os.environ.pop(trust.HASHES_ENV, None)
    yield hashes
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
