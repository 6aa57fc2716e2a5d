"""A Flower executor that runs each ClientApp task in a process forked from a warm parent.

Flower 1.42's SuperNode starts a fresh ``flwr-clientapp`` interpreter per message, which for
zk0 means importing torch and lerobot (about 10 s of CPU) every round on every node. This
executor keeps one fork server with those modules imported (``zk0.supernode.preload``) and
forks a ClientApp process from it per task: the same one-process-per-message isolation, the
same ``run_clientapp`` entry point, without the imports.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.supercore.constant import TaskType
from flwr.supercore.superexec.executor import ExecutionSpec, LaunchResult

from zk0.monitoring.node_report import REPORT_DIR_ENV

from .trust import AppNotTrusted, guarded_install

log = logging.getLogger(__name__)

APP_PACKAGES = ("zk0",)  # loaded from each run's app bundle, never from the warm parent
REFUSED_EXIT = 77  # sysexits' EX_NOPERM: the bundle is not on the allowlist, nothing of it ran
FAILURE_REASONS = ("error", "signal", "untrusted_app")  # zk0_node_task_failures_total{reason}


@dataclass(frozen=True)
class PoolConfig:
    preload: tuple[str, ...] = ("zk0.supernode.preload",)
    # SHA-256 of the app bundles this node runs (zk0.supernode.trust); empty: none
    trusted_apps: frozenset[str] = frozenset()
    # Private directory where ClientApps leave their training figures (zk0.monitoring.node_report)
    report_dir: str | None = None


def failure_reason(exitcode: int | None) -> str | None:
    """Why a finished ClientApp process failed (a FAILURE_REASONS word), or None when it did not."""
    if not exitcode:
        return None
    if exitcode == REFUSED_EXIT:
        return "untrusted_app"
    return "signal" if exitcode < 0 else "error"


def _forget_app_modules(packages: tuple[str, ...] = APP_PACKAGES) -> list[str]:
    """Drop the app's modules so Flower's loader imports them from the run's bundle."""
    dropped = [name for name in sys.modules if name.split(".")[0] in packages]
    for name in dropped:
        del sys.modules[name]
    return dropped


def _log_to_stderr() -> None:
    """The fork server is a fresh interpreter: give zk0.supernode's lines a handler again."""
    ours = logging.getLogger("zk0.supernode")
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False


def _tracking_refusals(install: Callable[..., Path], refused: list[bool]) -> Callable[..., Path]:
    """``install`` that notes in ``refused`` when it refused the bundle (the exit code says so)."""

    def install_noting_refusal(*args: Any, **kwargs: Any) -> Path:
        try:
            return install(*args, **kwargs)
        except AppNotTrusted:
            refused.append(True)
            raise

    return install_noting_refusal


def _run_task(
    runtime_api_address: str,
    token: str,
    insecure: bool,
    certificates_path: str | None,
    runtime_dependency_install: bool,
    trusted_apps: frozenset[str],
    report_dir: str | None = None,
) -> None:
    """Body of one forked ClientApp process: what ``flwr-clientapp`` does after its imports."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the launcher's handlers are not ours
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _log_to_stderr()
    if report_dir:  # the ClientApp leaves its training figures here for the launcher's metrics
        os.environ[REPORT_DIR_ENV] = report_dir
    _forget_app_modules()  # nothing from zk0 may be imported after this: it would shadow the bundle
    # The module, not the function; Any: install_from_fab is its import, not part of its API.
    runtime: Any = importlib.import_module("flwr.supernode.runtime.run_clientapp")

    # run_clientapp looks install_from_fab up at call time, with the FAB bytes it pulled: check
    # them before anything of the bundle is installed or imported. A refusal raises inside
    # run_clientapp's try, so Flower replies to the server with its usual ClientApp error.
    refused: list[bool] = []
    runtime.install_from_fab = _tracking_refusals(guarded_install(runtime.install_from_fab, trusted_apps), refused)
    try:
        runtime.run_clientapp(
            runtime_api_address=runtime_api_address,
            token=token,
            insecure=insecure,
            certificates=Path(certificates_path).read_bytes() if certificates_path else None,
            parent_pid=None,
            runtime_dependency_install=runtime_dependency_install,
        )
    except SystemExit:  # Flower exits 1 for every failed task: tell the launcher a refusal apart
        if refused:
            raise SystemExit(REFUSED_EXIT) from None
        raise


def _probe(modules: tuple[str, ...]) -> None:
    """Exit 0 when the fork server really holds the preloaded modules (it skips failed ones)."""
    sys.exit(0 if all(name in sys.modules for name in modules) else 3)


class WarmClientAppPool:
    """Flower ``Executor`` for ClientApp tasks, backed by a preloaded fork server."""

    def __init__(self, config: PoolConfig | None = None) -> None:
        self.config = config or PoolConfig()
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(list(self.config.preload))
        self._running: list[multiprocessing.process.BaseProcess] = []
        # Read by the node's metrics (zk0.monitoring.node_metrics) from its listener thread.
        self.launched = 0
        self.last_launch_time: float | None = None  # unix seconds
        self.failures: dict[str, int] = dict.fromkeys(FAILURE_REASONS, 0)  # fixed keys: safe to read
        self.ready = False

    def warm_up(self) -> float:
        """Start the fork server and wait until its imports are done; returns the seconds."""
        started = time.perf_counter()
        probe = self._ctx.Process(target=_probe, args=(self.config.preload,), name="zk0-clientapp-probe")
        probe.start()  # returns once the fork server has finished preloading
        probe.join()
        seconds = time.perf_counter() - started
        if probe.exitcode != 0:
            raise RuntimeError(
                f"the ClientApp pool could not preload {', '.join(self.config.preload)} "
                f"(probe exit {probe.exitcode}); run `python -c 'import zk0.supernode.preload'` to see why"
            )
        log.info("ClientApp pool warm in %.1f s (preloaded %s)", seconds, ", ".join(self.config.preload))
        self.ready = True
        return seconds

    # ---- flwr.supercore.superexec.executor.Executor

    def get_eligible_capacity(
        self, supported_task_types: set[TaskType], *, insecure: bool = False, root_certificates_path: str | None = None
    ) -> tuple[set[TaskType], set[str]]:
        """ClientApp tasks only, no capacity gate (like Flower's subprocess executor)."""
        del insecure, root_certificates_path
        return supported_task_types & {TaskType.CLIENT_APP}, set()

    def wait_for_capacity(self, task_type: TaskType | None = None, **_: object) -> None:
        """No capacity gate."""

    def launch(self, spec: ExecutionSpec) -> LaunchResult:
        if spec.task_type != TaskType.CLIENT_APP:
            return LaunchResult.failed(f"zk0-supernode runs ClientApp tasks only, not {spec.task_type}")
        process = self._ctx.Process(
            target=_run_task,
            name=f"zk0-clientapp-{spec.task_id}",
            args=(
                spec.runtime_api_address,
                spec.token,
                spec.insecure,
                spec.root_certificates_path,
                spec.runtime_dependency_install,
                self.config.trusted_apps,
                self.config.report_dir,
            ),
        )
        try:
            process.start()
        except OSError as err:
            return LaunchResult.failed(f"could not fork a ClientApp process: {err}")
        self._running.append(process)
        self.launched += 1
        self.last_launch_time = time.time()
        log.info("ClientApp task %d: pid %d forked from the warm pool", spec.task_id, process.pid)
        return LaunchResult.accepted()

    def reconcile(self) -> None:
        """Reap finished ClientApp processes."""
        for process in [p for p in self._running if not p.is_alive()]:
            process.join()
            if reason := failure_reason(process.exitcode):
                self.failures[reason] += 1
                log.debug("%s exited with %s (%s)", process.name, process.exitcode, reason)
            self._running.remove(process)

    def close(self) -> None:
        """Stop ClientApps still running (the SuperNode is going away) and the fork server."""
        for process in self._running:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGTERM)
        for process in self._running:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        self._running.clear()
