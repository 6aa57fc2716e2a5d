"""``zk0-supernode``: ``flower-supernode`` whose ClientApps start warm.

It takes exactly ``flower-supernode``'s arguments, starts the SuperNode with
``--isolation process`` and serves that SuperNode's Runtime API itself, the way
``flower-superexec`` would, but hands each ClientApp task to :class:`WarmClientAppPool`.
The SuperNode's exit status is this command's, so restart policies and health checks see
the SuperNode as before.

Two things plain ``flower-supernode`` does not do: a task runs only when its app bundle's
hash is on the node's allowlist (:mod:`zk0.supernode.trust`), and the Runtime API's
AcquireTask needs a secret made fresh for each start, so no other local process can take
(and run) the node's tasks.

One flag of its own: ``--metrics-address HOST:PORT`` serves the node's health for Prometheus
at ``http://HOST:PORT/metrics`` (:mod:`zk0.monitoring.node_metrics`); empty or absent: off.
HOST must be an address of this machine such as 127.0.0.1 or the tailnet address, never
0.0.0.0 or ::.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from zk0.deploy.launch import flower_bin
from zk0.monitoring import node_metrics
from zk0.monitoring.node_metrics import MetricsAddressError, NodeMetrics

from . import trust
from .pool import PoolConfig, WarmClientAppPool

if TYPE_CHECKING:
    from flwr.supercore.retry import RetryInvoker

log = logging.getLogger("zk0.supernode")

POLL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"  # Flower's SuperExec reads the same variable
SECRET_FLAG = "--superexec-auth-secret-file"
ACQUIRE_TASK = "/flwr.proto.Runtime/AcquireTask"  # the one Runtime method the secret guards


class UsageError(ValueError):
    pass


def runtime_api_address(supernode_args: list[str]) -> str:
    """Where the SuperNode serves its Runtime API, from its own ``--host``/``--port``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="9094")
    parser.add_argument("--superlink")
    parser.add_argument("--isolation")
    parser.add_argument("--ssl-certfile")
    parser.add_argument(SECRET_FLAG)
    known, _ = parser.parse_known_args(supernode_args)
    if known.superexec_auth_secret_file is not None:
        raise UsageError(f"zk0-supernode makes a fresh Runtime API secret on each start; drop {SECRET_FLAG}")
    if known.ssl_certfile is not None:
        raise UsageError(
            "zk0-supernode reaches the Runtime API in plaintext; drop --ssl-certfile/--ssl-keyfile "
            "and keep --host on 127.0.0.1 (the default)"
        )
    if known.isolation is not None:
        raise UsageError(
            "zk0-supernode runs the ClientApps itself (--isolation process); drop --isolation, "
            "or run flower-supernode directly for Flower's own subprocess isolation"
        )
    from zk0.validate import parse_hostport, parse_port

    try:  # the same rules as zk0bot and the roles: a typo stops here, not in a retry loop
        if known.superlink is not None:
            parse_hostport(known.superlink, "--superlink")
        port = parse_port(known.port, "--port")
    except ValueError as err:
        raise UsageError(str(err)) from None
    host = "127.0.0.1" if known.host in ("0.0.0.0", "") else known.host
    host = "[::1]" if host == "::" else host
    return f"{host}:{port}"


def _poll_interval() -> float:
    raw = os.environ.get(POLL_ENV, "1.0")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.01 <= value <= 60:
        raise UsageError(f"{POLL_ENV} must be seconds between 0.01 and 60, got {raw!r}")
    return value


def write_secret(directory: Path) -> tuple[Path, bytes]:
    """A random 32-byte secret in a new 0600 file under ``directory`` (a private 0700 dir)."""
    secret = secrets.token_bytes(32)
    path = directory / "superexec-auth.secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return path, secret


def load_trusted_apps() -> frozenset[str]:
    """The allowlist, with one clear line when it is empty (every run will be refused)."""
    allowed = trust.load_allowlist()
    if allowed:
        log.info("trusting %d app bundle(s): %s", len(allowed), ", ".join(sorted(h[:12] for h in allowed)))
    else:
        log.warning("no app is trusted, so this node will refuse every run; %s", trust.HOW_TO_TRUST)
    return allowed


def serve(
    supernode: subprocess.Popen,
    address: str,
    pool: WarmClientAppPool,
    interval: float,
    stopping: threading.Event,
    secret: bytes,
) -> None:
    """Acquire the SuperNode's ClientApp tasks and launch them, until it exits or we stop."""
    from flwr.proto.runtime_pb2 import AcquireTaskRequest
    from flwr.supercore.constant import TaskType
    from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor, SuperExecAuthHttpInterceptor
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supercore.superexec.plugin import AutoExecPlugin

    client = RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=True,  # plaintext, as flower-superexec uses it; zk0's stacks bind it to 127.0.0.1
        root_certificates=None,
        interceptors=[
            RuntimeVersionHttpInterceptor(component_name="SuperExec"),
            # as flower-superexec signs it; the ClientApps it forks use their task tokens
            SuperExecAuthHttpInterceptor(master_secret=secret, protected_methods={ACQUIRE_TASK}),
        ],
        retry_invoker=retry_while_running(make_simple_http_retry_invoker(), supernode, stopping),
    )
    plugin = AutoExecPlugin(
        runtime_api_address=address,
        insecure=True,
        root_certificates_path=None,
        runtime_dependency_install=False,
        executor=pool,
    )
    try:
        while not stopping.is_set() and supernode.poll() is None:
            pool.reconcile()
            types, fab_hashes = pool.get_eligible_capacity({TaskType.CLIENT_APP})
            try:
                reply = client.AcquireTask(
                    AcquireTaskRequest(supported_task_types=types, agentapp_fab_hashes=fab_hashes)
                )
            except Exception as err:  # noqa: BLE001 (the SuperNode restarts its API or is going away)
                log.debug("Runtime API at %s not answering: %s", address, err)
            else:
                if reply.HasField("task") and reply.token:
                    result = plugin.launch_task(token=reply.token, task=reply.task)
                    if result.message:
                        log.error("task %d: %s", reply.task.task_id, result.message)
            time.sleep(interval)
    finally:
        client.close()


def retry_while_running(invoker: RetryInvoker, supernode: subprocess.Popen, stopping: threading.Event) -> RetryInvoker:
    """Flower's retries, which never give up, given up once the SuperNode has exited.

    Its Runtime API goes with it, so retrying would keep this process (and the container)
    alive and unhealthy after the SuperNode stopped, e.g. when the SuperLink answered 401
    for a removed node, and the restart policy would never act.
    """
    flowers = invoker.should_giveup

    def give_up(err: Exception) -> bool:
        if supernode.poll() is not None or stopping.is_set():
            return True
        return flowers(err) if flowers is not None else False

    invoker.should_giveup = give_up
    return invoker


def warm_up_while_running(pool: WarmClientAppPool, supernode: subprocess.Popen, stopping: threading.Event) -> bool:
    """Warm the pool while the SuperNode connects; False if it exits (or we are stopped) first.

    The imports take a minute on a busy host: a refused SuperNode's exit must not wait for them.
    """
    failed: list[Exception] = []

    def warm() -> None:
        try:
            pool.warm_up()
        except Exception as err:  # noqa: BLE001 (raised again in the caller's thread)
            failed.append(err)

    thread = threading.Thread(target=warm, name="zk0-pool-warm-up", daemon=True)
    thread.start()
    while thread.is_alive():
        if supernode.poll() is not None or stopping.is_set():
            return False
        thread.join(0.2)
    if failed:
        raise failed[0]
    return True


def _setup_logging() -> None:
    """Our own lines only: the root logger stays untouched (no httpx line per task poll)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ours = logging.getLogger("zk0.supernode")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        usage = "usage: zk0-supernode [--metrics-address HOST:PORT] [flower-supernode arguments]"
        print(__doc__.strip() + "\n\n" + usage)
        return 0
    _setup_logging()
    try:
        metrics_text, args = node_metrics.split_metrics_flag(args)
        metrics_at = node_metrics.parse_metrics_address(metrics_text)
        address, interval = runtime_api_address(args), _poll_interval()
        trusted = load_trusted_apps()
    except (UsageError, MetricsAddressError, trust.TrustError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    private = Path(tempfile.mkdtemp(prefix="zk0-supernode-"))  # 0700: this user only
    try:
        secret_file, secret = write_secret(private)
        reports = None
        if metrics_at is not None:  # where ClientApps leave their training figures
            reports = private / "reports"
            reports.mkdir(mode=0o700)
        pool = WarmClientAppPool(PoolConfig(trusted_apps=trusted, report_dir=str(reports) if reports else None))
        try:  # bound before anything starts: a taken port stops the node here, with the reason
            metrics = NodeMetrics.start(*metrics_at, pool, reports) if metrics_at else None
        except OSError as err:
            print(f"error: cannot serve metrics on {metrics_text}: {err}; {node_metrics.BIND_FIX}", file=sys.stderr)
            return 2
        try:
            return _run(args, address, interval, pool, secret_file, secret, metrics)
        finally:
            if metrics is not None:
                metrics.close()
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _run(
    args: list[str],
    address: str,
    interval: float,
    pool: WarmClientAppPool,
    secret_file: Path,
    secret: bytes,
    metrics: NodeMetrics | None,
) -> int:
    argv = [flower_bin("flower-supernode"), *args, "--isolation", "process", SECRET_FLAG, str(secret_file)]
    if metrics is None:
        supernode = subprocess.Popen(argv)
    else:  # its output passes through us: the metrics follow its connection to the SuperLink
        supernode = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert supernode.stdout is not None
        metrics.watch_output(supernode.stdout, getattr(sys.stderr, "buffer", None))
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()
        if supernode.poll() is None:
            supernode.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if warm_up_while_running(pool, supernode, stopping):
            serve(supernode, address, pool, interval, stopping, secret)
    except Exception as err:  # noqa: BLE001 (a broken pool must not leave a SuperNode that runs nothing)
        log.error("zk0-supernode stops: %s", err)
        if supernode.poll() is None:
            supernode.terminate()
        supernode.wait()
        return 1
    finally:
        pool.close()
    code = supernode.wait()
    log.info("SuperNode exited with %s", code)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
