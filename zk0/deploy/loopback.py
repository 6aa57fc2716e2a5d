"""A whole federation on 127.0.0.1 from the production flags: for tests and the benchmark.

One TLS SuperLink with SuperNode auth and a SQLite database behind the edge proxy (nginx
with the server stack's own configuration, zk0.deploy.proxy): SuperNodes reach the public
listener, the admin reaches the Control API on the admin listener with a bearer token from
a private ``FLWR_HOME``; runs submitted and watched with ``flwr``. ``proxy=False`` exposes
the SuperLink's one port directly, as Flower does. Every process is started in its own
process group and stopped by :meth:`Loopback.close`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zk0.deploy import admin_auth, connection, enrollment, launch, pki
from zk0.deploy.proxy import render as proxy
from zk0.deploy.proxy.render import ProxyConfig  # the `proxy` field shadows the module in annotations

CONNECTION = "zk0-loopback"


@dataclass
class Credentials:
    """CA, SuperLink certificate and node key pairs in one directory tree."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        pki.create_ca(self.root / "ca")
        self.server = pki.create_superlink_cert(self.root / "superlink", ["localhost"], self.root / "ca")

    def node(self, name: str) -> pki.NodeKeyFiles:
        return pki.create_node_key(self.root / "nodes" / name)


def flwr_json(args: list[str], env: dict[str, str], timeout: float = 120) -> dict:
    """Run ``flwr ARGS --format json`` and return its JSON object."""
    proc = subprocess.run(
        [launch.flower_bin("flwr"), *args, "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout
    try:
        return json.loads(out[out.index("{") :])
    except ValueError as err:
        raise RuntimeError(
            f"`flwr {' '.join(args)}` exited {proc.returncode} without JSON:\n{out}\n{proc.stderr}"
        ) from err


@dataclass
class Loopback:
    """A SuperLink and SuperNodes on 127.0.0.1; call :meth:`close` (or use ``with``)."""

    base: Path
    creds: Credentials
    port: int = field(default_factory=launch.free_port)  # what nodes dial: the public listener
    processes: dict[str, launch.Process] = field(default_factory=dict)
    restarts: int = 0
    env: dict[str, str] = field(default_factory=dict)  # extra environment for every process
    proxy: bool = True
    superlink_port: int = field(default_factory=launch.free_port)  # behind the proxy
    admin_port: int = field(default_factory=launch.free_port)

    def __post_init__(self) -> None:
        self.base = Path(self.base)
        self.admin_home = self.base / "admin-flwr-home"
        self.logs = self.base / "logs"
        self.database = self.base / "superlink" / "state.db"
        self.database.parent.mkdir(parents=True, exist_ok=True)
        self.admin_token_file = self.base / "admin.token"
        if not self.proxy:
            self.superlink_port = self.admin_port = self.port

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        for proc in list(self.processes.values()):
            proc.stop(grace=3)

    @property
    def address(self) -> str:
        """The public listener: what SuperNodes (and outsiders) reach."""
        return f"127.0.0.1:{self.port}"

    @property
    def admin_address(self) -> str:
        return f"127.0.0.1:{self.admin_port}"

    @property
    def admin_env(self) -> dict[str, str]:
        return launch.flower_env(self.admin_home)

    def superlink_spec(self) -> launch.SuperLinkSpec:
        s = self.creds.server
        return launch.SuperLinkSpec(
            ssl_ca_certfile=s.ca_cert,
            ssl_certfile=s.cert,
            ssl_keyfile=s.key,
            database=self.database,
            host="127.0.0.1",
            port=self.superlink_port,
        )

    def start_superlink(self, timeout: float = 60) -> launch.Process:
        if (old := self.processes.get("superlink")) is not None:
            old.stop(grace=5)  # no-op when it already crashed
        launch.wait_port_free("127.0.0.1", self.superlink_port, 30)
        name = "superlink" if not self.restarts else f"superlink-{self.restarts}"
        self.restarts += 1
        proc = launch.start(
            name,
            self.superlink_spec().argv(),
            self.logs,
            launch.flower_env(self.base / "superlink" / "flwr-home", self.env),
        )
        self.processes["superlink"] = proc
        launch.wait_for_port("127.0.0.1", self.superlink_port, timeout, proc)
        if not proc.wait_for_output("Uvicorn running on", timeout):  # listening AND serving
            raise TimeoutError(f"SuperLink not serving after {timeout:.0f} s:\n{proc.output()[-2000:]}")
        if self.proxy and "proxy" not in self.processes:
            self.start_proxy(timeout)
        connection.write_connection(CONNECTION, self.admin_address, self.creds.server.ca_cert, home=self.admin_home)
        if self.proxy:
            token, _ = admin_auth.write_token(self.admin_token_file)
            admin_auth.login(CONNECTION, token, home=self.admin_home)
        return proc

    def proxy_config(self) -> ProxyConfig:
        s = self.creds.server
        return proxy.ProxyConfig(
            run_dir=self.base / "proxy",
            public_listen=self.address,
            admin_listen=self.admin_address,
            upstream=f"127.0.0.1:{self.superlink_port}",
            upstream_name="localhost",
            tls_cert=s.cert,
            tls_key=s.key,
            ca_cert=s.ca_cert,
            admin_token_file=self.admin_token_file,
            access_log=str(self.logs / "proxy-access.log"),
        )

    def start_proxy(self, timeout: float = 30) -> launch.Process:
        """nginx with the server stack's configuration, in front of the SuperLink."""
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise RuntimeError("nginx is not installed: `apt-get install nginx-light` (Debian's package)")
        admin_auth.write_token(self.admin_token_file)
        conf = proxy.write(self.proxy_config())
        proc = launch.start("proxy", proxy.nginx_argv(conf, nginx), self.logs, launch.flower_env(self.base / "proxy"))
        self.processes["proxy"] = proc
        launch.wait_for_port("127.0.0.1", self.port, timeout, proc)
        launch.wait_for_port("127.0.0.1", self.admin_port, timeout, proc)
        return proc

    @contextmanager
    def as_admin(self) -> Iterator[None]:
        """In-process flwr client calls use the admin's FLWR_HOME (its connection + CA)."""
        with connection.using_flwr_home(self.admin_home):
            yield

    def register(self, key: pki.NodeKeyFiles) -> enrollment.Outcome:
        with self.as_admin():
            return enrollment.register(key.public_key, CONNECTION)

    def nodes(self) -> list[enrollment.Node]:
        with self.as_admin():
            return enrollment.list_nodes(CONNECTION)

    def node_spec(self, key: pki.NodeKeyFiles | None, node_config: dict, **kw: Any) -> launch.SuperNodeSpec:
        return launch.SuperNodeSpec(
            superlink=self.address,
            root_certificates=kw.pop("root_certificates", self.creds.server.ca_cert),
            auth_private_key=key.private_key if key else None,
            node_config=node_config,
            port=launch.free_port(),
            **kw,
        )

    def start_node(
        self, name: str, spec: launch.SuperNodeSpec, extra_env: dict[str, str] | None = None
    ) -> launch.Process:
        old = self.processes.get(name)
        if old is not None:
            old.stop(grace=3)
        env = launch.flower_env(self.base / name / "flwr-home", {**self.env, **(extra_env or {})})
        proc = launch.start(name, spec.argv(), self.logs, env)
        self.processes[name] = proc
        return proc

    def wait_ready(self, name: str, timeout: float = 300) -> None:
        """Block until node ``name`` has its SuperNode ID and, on zk0-supernode, a warm pool."""
        proc = self.processes[name]
        warm = Path(proc.argv[0]).name == "zk0-supernode"
        for text in ("SuperNode ID", *(["ClientApp pool warm"] if warm else [])):
            if not proc.wait_for_output(text, timeout):
                raise TimeoutError(f"{name}: no {text!r} after {timeout:.0f} s\n{proc.output()[-2000:]}")

    # ------------------------------------------------------------ runs
    def submit(self, app: Path, run_config: dict | None = None) -> int:
        args = ["run", str(app), CONNECTION]
        if run_config:
            args += ["--run-config", launch.format_node_config(run_config)]
        result = flwr_json(args, self.admin_env)
        if not result.get("success"):
            raise RuntimeError(f"flwr run failed: {result}")
        return int(result["run-id"])

    def run_info(self, run_id: int) -> dict:
        result = flwr_json(["ls", CONNECTION, "--run-id", str(run_id)], self.admin_env)
        if not result.get("success"):
            raise RuntimeError(f"flwr ls failed: {result}")
        return result["runs"][0]

    def run_status(self, run_id: int) -> str:
        """``status:sub-status`` of a run, read in-process (cheap enough to poll)."""
        from flwr.proto.control_pb2 import ListRunsRequest

        with self.as_admin(), enrollment.control_client(CONNECTION, quiet=True) as client:
            run = client.ListRuns(ListRunsRequest(run_id=run_id)).run_dict[run_id]
        status = run.status
        return f"{status.status}:{status.sub_status}" if status.sub_status else status.status

    def wait_finished(self, run_id: int, timeout: float) -> dict:
        """Poll until the run is finished, then return ``flwr ls --format json``'s entry."""
        deadline = time.monotonic() + timeout
        status = ""
        while time.monotonic() < deadline:
            try:
                status = self.run_status(run_id)
            except Exception as err:  # noqa: BLE001 (SuperLink restarting: poll until the deadline)
                status = f"unreachable ({err})"
            if status.startswith("finished"):
                return self.run_info(run_id)
            time.sleep(1)
        raise TimeoutError(f"run {run_id} not finished after {timeout:.0f} s; last: {status}\n{self.tails()}")

    def tails(self, chars: int = 1500) -> str:
        """The end of every process log, for failure messages."""
        return "\n".join(
            f"--- {name} ({'alive' if p.alive() else f'exit {p.popen.returncode}'})\n{p.output()[-chars:]}"
            for name, p in self.processes.items()
        )
