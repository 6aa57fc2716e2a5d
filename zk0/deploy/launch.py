"""Exact command lines for zk0's SuperLink and SuperNodes on Flower 1.42, and a process handle.

The ``*Spec.argv()`` methods build the same flags as the Compose stacks the roles install
(``roles/*/files/compose.yml``; tests/unit/test_compose_flags.py checks that they agree);
tests and the benchmark start real processes from them with :func:`start`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SUPERLINK_PORT = 8000
DEFAULT_SUPERNODE_PORT = 9094


def flower_bin(name: str) -> str:
    """Path of a Flower executable next to the running interpreter (the project's venv)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def format_node_config(config: dict[str, str | int | float | bool]) -> str:
    """Render ``--node-config``: space separated ``key=value``; strings double quoted (TOML)."""
    parts = []
    for key, value in config.items():
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, (int, float)):
            rendered = repr(value)
        else:
            rendered = json.dumps(str(value))
        parts.append(f"{key}={rendered}")
    return " ".join(parts)


@dataclass(frozen=True)
class SuperLinkSpec:
    """A production SuperLink: TLS, SuperNode auth, persistent state, no run-time installs."""

    ssl_ca_certfile: Path
    ssl_certfile: Path
    ssl_keyfile: Path
    database: Path
    host: str = "0.0.0.0"
    port: int = DEFAULT_SUPERLINK_PORT
    enable_supernode_auth: bool = True
    log_file: Path | None = None
    # Production runs ServerApps in a separate SuperExec ("process"); None keeps Flower's
    # default (a subprocess of the SuperLink), which the loopback federation uses.
    isolation: str | None = None
    superexec_auth_secret_file: Path | None = None
    health_server_address: str | None = None

    @property
    def address(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"{host}:{self.port}"

    def argv(self) -> list[str]:
        args = [
            flower_bin("flower-superlink"),
            "--ssl-ca-certfile",
            str(self.ssl_ca_certfile),
            "--ssl-certfile",
            str(self.ssl_certfile),
            "--ssl-keyfile",
            str(self.ssl_keyfile),
            "--database",
            str(self.database),
            "--disable-runtime-dependency-installation",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        if self.enable_supernode_auth:
            args.append("--enable-supernode-auth")
        if self.isolation is not None:
            args += ["--isolation", self.isolation]
        if self.superexec_auth_secret_file is not None:
            args += ["--superexec-auth-secret-file", str(self.superexec_auth_secret_file)]
        if self.health_server_address is not None:
            args += ["--health-server-address", self.health_server_address]
        if self.log_file is not None:
            args += ["--log-file", str(self.log_file)]
        return args


@dataclass(frozen=True)
class SuperNodeSpec:
    """A production SuperNode: verifies the SuperLink with the CA, authenticates with its key."""

    superlink: str
    root_certificates: Path | None
    auth_private_key: Path | None
    node_config: dict[str, str | int | float | bool] = field(default_factory=dict)
    port: int = DEFAULT_SUPERNODE_PORT
    host: str = "127.0.0.1"
    max_retries: int | None = None
    max_wait_time: float | None = None
    insecure: bool = False
    health_server_address: str | None = None
    # zk0-supernode: the same SuperNode, with ClientApps forked from a preloaded parent
    # (zk0.supernode); False runs Flower's flower-supernode with its subprocess isolation.
    warm_clientapps: bool = True
    # zk0-supernode's own --metrics-address HOST:PORT (zk0.monitoring.node_metrics); None: off.
    metrics_address: str | None = None

    def argv(self) -> list[str]:
        command = "zk0-supernode" if self.warm_clientapps else "flower-supernode"
        args = [flower_bin(command), "--superlink", self.superlink]
        if self.insecure:
            args.append("--insecure")
        if self.root_certificates is not None:
            args += ["--root-certificates", str(self.root_certificates)]
        if self.auth_private_key is not None:
            args += ["--auth-supernode-private-key", str(self.auth_private_key)]
        if self.node_config:
            args += ["--node-config", format_node_config(self.node_config)]
        args += ["--host", self.host, "--port", str(self.port)]
        if self.max_retries is not None:
            args += ["--max-retries", str(self.max_retries)]
        if self.max_wait_time is not None:
            args += ["--max-wait-time", str(self.max_wait_time)]
        if self.health_server_address is not None:
            args += ["--health-server-address", self.health_server_address]
        if self.metrics_address is not None:
            if not self.warm_clientapps:
                raise ValueError("--metrics-address is zk0-supernode's flag: flower-supernode has no metrics listener")
            args += ["--metrics-address", self.metrics_address]
        return args


# ---------------------------------------------------------------- running processes


def flower_env(flwr_home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a Flower process: own FLWR_HOME, telemetry off, venv bin on PATH."""
    env = dict(os.environ)
    env["FLWR_HOME"] = str(flwr_home)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"  # logs reach the file as they happen
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


@dataclass
class Process:
    """A started Flower process in its own process group, with its output in ``log``."""

    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the App processes this one spawned included)."""
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.popen.pid, sig)

    def crash(self) -> None:
        """SIGKILL the group (no clean shutdown) and reap it: a simulated crash."""
        self.kill(signal.SIGKILL)
        self.popen.wait()

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the group, SIGKILL what is left after ``grace`` seconds, reap."""
        if self.alive():
            self.kill(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        self.kill(signal.SIGKILL)  # children that outlived their parent
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace)

    def wait_for_output(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            time.sleep(0.2)
        return text in self.output()


def start(name: str, argv: list[str], log_dir: Path, env: dict[str, str]) -> Process:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("ab") as fh:
        popen = subprocess.Popen(
            argv,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    return Process(name=name, argv=argv, log=log, popen=popen)


def wait_for_port(host: str, port: int, timeout: float, process: Process | None = None) -> None:
    """Block until ``host:port`` accepts TCP connections; fail early if ``process`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise RuntimeError(
                f"{process.name} exited with {process.popen.returncode} before listening on "
                f"{host}:{port}; its log ({process.log}) ends with:\n{process.output()[-2000:]}"
            )
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"Nothing listens on {host}:{port} after {timeout:.0f} s.")


def wait_port_free(host: str, port: int, timeout: float) -> None:
    """Block until nothing accepts on ``host:port`` (a previous server is really gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) != 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{host}:{port} still in use after {timeout:.0f} s.")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
