"""zk0bot driven for real: the installed `zk0bot` script in a subprocess, against a loopback
TLS SuperLink (zk0.deploy.loopback) or ansible-playbook in check mode on this machine.

Each test gets its own ZK0BOT_HOME and FLWR_HOME, so nothing touches the user's state, and
every Flower process is stopped by the Loopback fixture, also when a test fails."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from zk0.deploy.loopback import Credentials, Loopback

REPO = Path(__file__).resolve().parents[3]
ZK0BOT = Path(sys.executable).parent / "zk0bot"


@dataclass
class Bot:
    """Runs `zk0bot ARGS` with a private state dir and flwr home."""

    home: Path
    flwr_home: Path

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess:
        full_env = {
            **os.environ,
            "ZK0BOT_HOME": str(self.home),
            "FLWR_HOME": str(self.flwr_home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "COLUMNS": "200",  # rich wraps at the terminal width; keep messages on one line
            **(env or {}),
        }
        return subprocess.run(
            [str(ZK0BOT), *args], capture_output=True, text=True, env=full_env, timeout=timeout, check=False
        )


@pytest.fixture
def bot(tmp_path: Path) -> Bot:
    assert ZK0BOT.exists(), "zk0bot is not installed in this venv: `make setup` (or uv pip install -e .)"
    return Bot(tmp_path / "zk0bot-home", tmp_path / "flwr-home")


@pytest.fixture
def ansible() -> Path:
    """ansible-playbook as zk0bot finds it; `make test` sets up .venv-ops (lint runs first)."""
    from zk0.bot.errors import BotError
    from zk0.bot.playbook import ansible_playbook

    try:
        return ansible_playbook()
    except BotError as err:
        pytest.fail(f"{err} (run `make setup-ops`, or `make test`, which does)")


@pytest.fixture(autouse=True, scope="session")
def _trusted_apps(release_hashes: dict[str, str]) -> None:
    """The SuperNodes zk0bot's runs reach trust the app it submits (tests/conftest.py)."""


@pytest.fixture(scope="session")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return Credentials(tmp_path_factory.mktemp("bot-pki"))


@pytest.fixture
def loopback(tmp_path: Path, creds: Credentials) -> Iterator[Loopback]:
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    fed = Loopback(tmp_path / "fed", creds)
    try:
        yield fed
    finally:
        fed.close()
