"""Node health for Prometheus, served by ``zk0-supernode --metrics-address HOST:PORT``.

Everything is read when Prometheus scrapes (a custom collector, no background sampling):

* ``zk0_node_up`` 1 while the launcher runs; ``zk0_node_clientapp_pool_ready`` 1 once the warm
  ClientApp pool has finished its imports;
* ``zk0_node_superlink_connected``: 1 from flower-supernode's "SuperNode ID" line (the SuperLink
  accepted the node's key and activated it) or a "Connection successful after" line, 0 from a
  "Connection attempt failed" / "Giving up reconnection" line (its Fleet API calls are failing
  and being retried), 0 at start and once the SuperNode's output ends. The launcher relays that
  output line by line to its own stderr and watches it (:class:`SuperLinkWatch`). Why this
  signal: the gRPC health service the container's healthcheck asks answers SERVING from start
  to exit whether or not the SuperLink is reachable, and the SuperNode has no other view of its
  connection. Limits: it follows Flower 1.42's log text (pinned by tests/unit/test_node_metrics.py);
  an idle node calls the SuperLink every 3 s, so a loss shows within seconds plus the retry's
  back-off; failed heartbeats alone are not logged by Flower and do not show;
* ``zk0_node_tasks_total``, ``zk0_node_last_task_timestamp_seconds`` (unix seconds, from the
  first task on) and ``zk0_node_task_failures_total{reason}``: ``error`` (a ClientApp process
  exited non-zero), ``signal`` (it was killed: the OOM killer, a stop), ``untrusted_app`` (its
  bundle was not on the node's allowlist and never ran);
* ``zk0_node_last_train_*``: the figures of the node's last training message, which the ClientApp
  process hands over in a small file (:mod:`zk0.monitoring.node_report`);
* ``zk0_node_gpu_utilization_percent``, ``zk0_node_gpu_memory_used_bytes`` and
  ``zk0_node_gpu_memory_total_bytes`` per ``gpu`` index, through NVML when it initialises (no
  driver or no GPU: no GPU series, no error).

The only label is ``gpu`` (an index) and ``reason`` (a fixed word): no path, repo id, dataset or
host name is ever in a label or a value.

The listener binds only the address given; 0.0.0.0 and :: are refused. It is bound before the
SuperNode and the pool's fork server start, which is safe: Python's sockets are not inheritable
(PEP 446), ``subprocess`` closes other descriptors anyway, and the fork server is a fresh
interpreter started with only its own descriptors; ClientApps are forked from it, never from
the launcher.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import logging
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from zk0.validate import parse_hostport

from .node_report import read_train_report

log = logging.getLogger("zk0.supernode")

METRICS_FLAG = "--metrics-address"
BIND_FIX = (
    "bind to 127.0.0.1 (this machine only) or to the node's tailnet address, e.g. 100.101.102.103:9401 "
    "(in the Compose stack, publish the port with ZK0_NODE_METRICS_BIND instead)"
)
CONNECTED_LINES = ("SuperNode ID:", "Connection successful after")
LOST_LINES = ("Connection attempt failed", "Giving up reconnection")


class MetricsAddressError(ValueError):
    """``--metrics-address`` is malformed, unresolvable or would face every network."""


# ---------------------------------------------------------------- the flag


def split_metrics_flag(args: list[str]) -> tuple[str, list[str]]:
    """``--metrics-address`` out of the launcher's arguments; the rest go to flower-supernode."""
    value, rest, i = "", [], 0
    while i < len(args):
        arg = args[i]
        if arg == METRICS_FLAG:
            if i + 1 >= len(args):
                raise MetricsAddressError(f"{METRICS_FLAG} needs HOST:PORT (or '' for no metrics); {BIND_FIX}")
            value, i = args[i + 1], i + 2
        elif arg.startswith(METRICS_FLAG + "="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            rest.append(arg)
            i += 1
    return value, rest


def parse_metrics_address(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` to an IP to bind and a port; ``''``: no listener. A name is resolved now."""
    text = text.strip()
    if not text:
        return None
    if text.startswith((":", "[]")):
        raise MetricsAddressError(f"{METRICS_FLAG} {text!r} has no host, which would listen everywhere; {BIND_FIX}")
    try:
        host, port = parse_hostport(text, METRICS_FLAG)
    except ValueError as err:
        raise MetricsAddressError(str(err)) from None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as err:
            raise MetricsAddressError(f"{METRICS_FLAG} {text!r}: cannot resolve {host!r} ({err}); {BIND_FIX}") from None
        found.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first: what Docker publishes to
        ip = ipaddress.ip_address(found[0][4][0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        raise MetricsAddressError(
            f"{METRICS_FLAG} {text!r} would serve the node's metrics on every network it is on; {BIND_FIX}"
        )
    return str(ip), port


# ---------------------------------------------------------------- the SuperLink connection


@dataclass
class SuperLinkWatch:
    """Whether the SuperNode is connected to the SuperLink, from its own log lines."""

    connected: bool = False

    def feed(self, line: str) -> None:
        if any(mark in line for mark in LOST_LINES):
            self.connected = False
        elif any(mark in line for mark in CONNECTED_LINES):
            self.connected = True

    def ended(self) -> None:
        self.connected = False


def relay(source: IO[bytes], sink: IO[bytes] | None, watch: SuperLinkWatch) -> None:
    """Copy the SuperNode's output to ``sink`` line by line, watching it, until it ends.

    A failing sink never stops the copy: the SuperNode must never block on a full pipe.
    """
    for raw in iter(source.readline, b""):
        if sink is not None:
            with contextlib.suppress(OSError, ValueError):
                sink.write(raw)
                sink.flush()
        watch.feed(raw.decode("utf-8", errors="replace"))
    watch.ended()


# ---------------------------------------------------------------- NVML


class Nvml(Protocol):
    """The part of pynvml (nvidia-ml-py) the collector calls."""

    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...


def load_nvml(module: str = "pynvml") -> Nvml | None:
    """pynvml, initialised; None when it is missing or NVML does not start (no driver, no GPU)."""
    try:
        nvml: Any = importlib.import_module(module)
        nvml.nvmlInit()
    except Exception as err:  # noqa: BLE001 (ImportError, NVMLError_LibraryNotFound, driver errors: all mean none)
        log.info("no GPU figures in the node's metrics: NVML is not available (%s)", type(err).__name__)
        return None
    return nvml


def gpu_metrics(nvml: Nvml | None) -> list[Metric]:
    """Utilisation and memory per GPU index; a GPU that does not answer is left out."""
    if nvml is None:
        return []
    labels = ["gpu"]
    util = GaugeMetricFamily(
        "zk0_node_gpu_utilization_percent", "GPU busy time in the last sample period", labels=labels
    )
    used = GaugeMetricFamily("zk0_node_gpu_memory_used_bytes", "GPU memory in use (all processes)", labels=labels)
    total = GaugeMetricFamily("zk0_node_gpu_memory_total_bytes", "GPU memory installed", labels=labels)
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except Exception as err:  # noqa: BLE001 (NVMLError and its many subclasses)
        log.debug("NVML device count failed: %s", err)
        return []
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            rates = nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            figures = (float(rates.gpu), float(memory.used), float(memory.total))
        except Exception as err:  # noqa: BLE001 (a GPU that fell off the bus: report the others)
            log.debug("NVML figures of GPU %d failed: %s", index, err)
            continue
        for family, value in zip((util, used, total), figures, strict=True):
            family.add_metric([str(index)], value)
    return [family for family in (util, used, total) if family.samples]


# ---------------------------------------------------------------- the collector


class TaskSource(Protocol):
    """What the collector reads of the warm ClientApp pool (zk0.supernode.pool)."""

    @property
    def launched(self) -> int: ...
    @property
    def last_launch_time(self) -> float | None: ...
    @property
    def failures(self) -> Mapping[str, int]: ...
    @property
    def ready(self) -> bool: ...


@dataclass(eq=False)  # registered by identity
class NodeCollector(Collector):
    """The node's health, read at scrape time (see the module docstring)."""

    tasks: TaskSource
    watch: SuperLinkWatch
    reports: Path | None = None
    nvml: Nvml | None = None

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("zk0_node_up", "1 while zk0-supernode runs", value=1)
        yield GaugeMetricFamily(
            "zk0_node_superlink_connected",
            "1 while the SuperNode's calls to the SuperLink succeed (from its log)",
            value=float(self.watch.connected),
        )
        yield GaugeMetricFamily(
            "zk0_node_clientapp_pool_ready", "1 once the warm ClientApp pool is ready", value=float(self.tasks.ready)
        )
        yield CounterMetricFamily(
            "zk0_node_tasks", "ClientApp tasks handed to a forked process", value=self.tasks.launched
        )
        if (last := self.tasks.last_launch_time) is not None:
            yield GaugeMetricFamily(
                "zk0_node_last_task_timestamp_seconds", "When the pool last handed a task to a ClientApp", value=last
            )
        failures = CounterMetricFamily(
            "zk0_node_task_failures", "ClientApp tasks that failed, by reason", labels=["reason"]
        )
        for reason, count in sorted(dict(self.tasks.failures).items()):
            failures.add_metric([reason], count)
        yield failures
        yield from self._last_train()
        yield from gpu_metrics(self.nvml)

    def _last_train(self) -> Iterable[Metric]:
        report = read_train_report(self.reports) if self.reports is not None else None
        if report is None:
            return []
        return [
            GaugeMetricFamily(
                "zk0_node_last_train_round", "Server round of the last training", value=report.server_round
            ),
            GaugeMetricFamily("zk0_node_last_train_duration_seconds", "Local training time", value=report.seconds),
            GaugeMetricFamily(
                "zk0_node_last_train_samples_per_second", "Training throughput", value=report.samples_per_second
            ),
            GaugeMetricFamily("zk0_node_last_train_examples", "Examples trained on", value=report.examples),
            GaugeMetricFamily(
                "zk0_node_last_train_timestamp_seconds", "When the last training finished", value=report.finished_at
            ),
        ]


# ---------------------------------------------------------------- the listener


@dataclass
class NodeMetrics:
    """The launcher's metrics: the listener, the watch on the SuperNode's output, the reports."""

    collector: NodeCollector
    server: Any = None
    relay_thread: threading.Thread | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    @classmethod
    def start(cls, host: str, port: int, tasks: TaskSource, reports: Path | None) -> NodeMetrics:
        """Bind ``host:port`` now (OSError when it is taken or not this machine's) and serve."""
        metrics = cls(NodeCollector(tasks, SuperLinkWatch(), reports, load_nvml()))
        registry = CollectorRegistry(auto_describe=False)  # ours only: no process or platform series
        registry.register(metrics.collector)
        metrics.server, _thread = start_http_server(port, addr=host, registry=registry)
        log.info("node metrics on http://%s/metrics", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return metrics

    def watch_output(self, source: IO[bytes], sink: IO[bytes] | None) -> None:
        """Relay the SuperNode's output (its stdout with stderr) and follow its connection."""
        self.relay_thread = threading.Thread(
            target=relay, args=(source, sink, self.collector.watch), name="zk0-supernode-output", daemon=True
        )
        self.relay_thread.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.relay_thread is not None:
            self.relay_thread.join(timeout=5)  # the SuperNode has exited: its last lines
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
