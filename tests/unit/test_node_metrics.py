"""zk0-supernode's health metrics: the collector, the ClientApp's report, the listener, privacy."""

from __future__ import annotations

import inspect
import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from zk0.deploy import launch
from zk0.monitoring import node_metrics, node_report
from zk0.monitoring.node_metrics import (
    MetricsAddressError,
    NodeCollector,
    NodeMetrics,
    SuperLinkWatch,
    parse_metrics_address,
    split_metrics_flag,
)
from zk0.supernode import launcher, pool, trust
from zk0.supernode.pool import PoolConfig, WarmClientAppPool

SECRETS = ("/home/alice/so100-secret", "alice/private-set", "alice-gpu-box.example.org")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition text."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape_text(collector: NodeCollector) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode()


def idle_pool() -> WarmClientAppPool:
    return WarmClientAppPool(PoolConfig(preload=("colorsys",)))  # nothing started


# ---------------------------------------------------------------- the ClientApp's report


def test_report_is_written_atomically_and_privately(tmp_path: Path) -> None:
    written = node_report.write_train_report(4, 12.5, 40.0, 500, directory=tmp_path)
    assert written == tmp_path / node_report.TRAIN_REPORT
    assert written.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [node_report.TRAIN_REPORT]  # no temporary left
    report = node_report.read_train_report(tmp_path)
    assert report is not None
    assert (report.server_round, report.seconds, report.samples_per_second, report.examples) == (4, 12.5, 40.0, 500.0)
    assert set(json.loads(written.read_text())) == {
        "server_round",
        "seconds",
        "samples_per_second",
        "examples",
        "finished_at",
    }


def test_report_goes_where_the_launcher_says_and_nowhere_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(node_report.REPORT_DIR_ENV, raising=False)
    assert node_report.write_train_report(1, 1.0, 1.0, 1) is None  # simulation, plain flower-supernode
    monkeypatch.setenv(node_report.REPORT_DIR_ENV, str(tmp_path))
    assert node_report.write_train_report(1, 1.0, 1.0, 1) == tmp_path / node_report.TRAIN_REPORT


def test_a_report_never_fails_the_round(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert node_report.write_train_report(1, 1.0, 1.0, 1, directory=tmp_path / "gone") is None
    assert "could not record" in caplog.text
    assert node_report.write_train_report(1, float("nan"), 1.0, 1, directory=tmp_path) is None
    assert not (tmp_path / node_report.TRAIN_REPORT).exists()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"server_round": 1}',
        '{"server_round": 1, "seconds": "12", "samples_per_second": 1, "examples": 1, "finished_at": 1}',
        '{"server_round": 1, "seconds": -1, "samples_per_second": 1, "examples": 1, "finished_at": 1}',
        '{"server_round": true, "seconds": 1, "samples_per_second": 1, "examples": 1, "finished_at": 1}',
        "{" + " " * 5000 + "}",
    ],
)
def test_a_report_that_is_not_one_is_ignored(tmp_path: Path, content: str) -> None:
    (tmp_path / node_report.TRAIN_REPORT).write_text(content)
    assert node_report.read_train_report(tmp_path) is None
    collector = NodeCollector(idle_pool(), SuperLinkWatch(), tmp_path)
    assert "zk0_node_last_train" not in scrape_text(collector)


# ---------------------------------------------------------------- the collector, from real state


_REAL_POOL = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from pathlib import Path
    from prometheus_client import CollectorRegistry, generate_latest
    from flwr.supercore.constant import TaskType
    from flwr.supercore.superexec.executor import ExecutionSpec
    from zk0.monitoring.node_metrics import NodeCollector, SuperLinkWatch
    from zk0.monitoring.node_report import write_train_report
    from zk0.supernode.pool import REFUSED_EXIT, PoolConfig, WarmClientAppPool

    reports = Path(sys.argv[1])
    pool = WarmClientAppPool(PoolConfig(preload=("colorsys",), report_dir=str(reports)))
    try:
        pool.warm_up()
        # One task through the real launch path; its Runtime API does not exist, so kill it.
        before = time.time()
        spec = ExecutionSpec(task_type=TaskType.CLIENT_APP, runtime_api_address="127.0.0.1:1", token="t",
                             insecure=True, root_certificates_path=None, runtime_dependency_install=False,
                             parent_pid=None, suppress_output=True, task_id=1)
        assert pool.launch(spec).status.name == "ACCEPTED"
        task = pool._running[0]
        os.kill(task.pid, signal.SIGKILL)
        # ClientApp processes that exit as Flower's do: fine, failed, refused (zk0's own code).
        for code in (0, 1, REFUSED_EXIT):
            process = pool._ctx.Process(target=os._exit, args=(code,))
            process.start()
            pool._running.append(process)
        for process in pool._running:
            process.join(30)
        pool.reconcile()
        write_train_report(3, 12.5, 40.0, 500, directory=reports)  # what the ClientApp calls
        watch = SuperLinkWatch()
        watch.feed("INFO :      SuperNode ID: 42")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(NodeCollector(pool, watch, reports, nvml=None))
        print(json.dumps({"before": before, "text": generate_latest(registry).decode()}))
    finally:
        pool.close()
    """
)


def test_collector_exposes_the_pool_the_report_and_the_connection(tmp_path: Path) -> None:
    proc = subprocess.run(  # a fresh interpreter: the fork server is one per process, as in zk0-supernode
        [sys.executable, "-c", _REAL_POOL, str(tmp_path)], capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    got = samples(out["text"])
    assert got[("zk0_node_up", ())] == 1
    assert got[("zk0_node_superlink_connected", ())] == 1
    assert got[("zk0_node_clientapp_pool_ready", ())] == 1
    assert got[("zk0_node_tasks_total", ())] == 1
    assert out["before"] <= got[("zk0_node_last_task_timestamp_seconds", ())] <= out["before"] + 60
    failures = {
        dict(labels)["reason"]: value for (name, labels), value in got.items() if name.endswith("failures_total")
    }
    assert failures == {"error": 1, "signal": 1, "untrusted_app": 1}  # the exit 0 is no failure
    assert got[("zk0_node_last_train_round", ())] == 3
    assert got[("zk0_node_last_train_duration_seconds", ())] == 12.5
    assert got[("zk0_node_last_train_samples_per_second", ())] == 40.0
    assert got[("zk0_node_last_train_examples", ())] == 500
    assert got[("zk0_node_last_train_timestamp_seconds", ())] >= out["before"]
    assert not [name for name, _ in got if "gpu" in name]
    assert {label for _, labels in got for label, _ in labels} == {"reason"}


def test_an_idle_node_exports_zeros_and_no_task_time() -> None:
    got = samples(scrape_text(NodeCollector(idle_pool(), SuperLinkWatch())))
    assert got[("zk0_node_up", ())] == 1
    assert got[("zk0_node_superlink_connected", ())] == 0
    assert got[("zk0_node_clientapp_pool_ready", ())] == 0
    assert got[("zk0_node_tasks_total", ())] == 0
    assert ("zk0_node_last_task_timestamp_seconds", ()) not in got
    assert {dict(labels)["reason"] for (name, labels) in got if name == "zk0_node_task_failures_total"} == set(
        pool.FAILURE_REASONS
    )


@pytest.mark.parametrize(
    ("exitcode", "reason"), [(0, None), (None, None), (1, "error"), (77, "untrusted_app"), (-9, "signal")]
)
def test_failure_reasons(exitcode: int | None, reason: str | None) -> None:
    assert pool.failure_reason(exitcode) == reason


def test_a_refused_bundle_is_told_apart_from_a_failed_one() -> None:
    refused: list[bool] = []
    install = pool._tracking_refusals(trust.guarded_install(lambda fab, **kw: Path("/x"), frozenset()), refused)
    with pytest.raises(trust.AppNotTrusted):
        install(b"PK not trusted", skip_prompt=True)
    assert refused == [True]
    fine: list[bool] = []
    digest = trust.fab_sha256(b"PK trusted")
    assert pool._tracking_refusals(trust.guarded_install(lambda fab, **kw: Path("/x"), {digest}), fine)(b"PK trusted")
    assert fine == []


# ---------------------------------------------------------------- the SuperLink connection


def test_connection_follows_flowers_own_log_lines() -> None:
    """The lines come from Flower's logger in a real process, and pass through unchanged."""
    code = textwrap.dedent(
        """
        from logging import INFO, WARNING
        from flwr.supercore import log
        log(WARNING, "Connection attempt failed, retrying in %.2f seconds", 1.0)
        log(INFO, "SuperNode ID: %s", 1234)
        log(WARNING, "Connection attempt failed, retrying in %.2f seconds", 2.0)
        log(INFO, "Connection successful after %.2f seconds and %s tries.", 3.0, 2)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen: list[bool] = []

    class Recording(SuperLinkWatch):
        def feed(self, line: str) -> None:
            super().feed(line)
            seen.append(self.connected)

    watch, sink = Recording(), io.BytesIO()
    assert child.stdout is not None
    node_metrics.relay(child.stdout, sink, watch)
    assert child.wait(30) == 0
    assert seen == [False, True, False, True]
    assert b"SuperNode ID: 1234" in sink.getvalue() and sink.getvalue().count(b"\n") == 4
    assert watch.connected is False  # the output ended: the SuperNode is gone


def test_the_watched_lines_are_still_flowers() -> None:
    """Pin the log text the watch relies on to the Flower release in the lock."""
    from flwr.supercore.retry import http_retry
    from flwr.supernode import start_client_internal

    source = inspect.getsource(start_client_internal) + inspect.getsource(http_retry)
    for mark in (*node_metrics.CONNECTED_LINES, *node_metrics.LOST_LINES):
        assert mark in source, mark


def test_relay_survives_a_broken_sink() -> None:
    class Broken(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError("stderr closed")

    watch = SuperLinkWatch()
    node_metrics.relay(io.BytesIO(b"a\nINFO :      SuperNode ID: 1\nb\n"), Broken(), watch)
    assert watch.connected is False  # read to the end (and then ended)


# ---------------------------------------------------------------- GPUs


def test_without_nvml_there_are_no_gpu_series_and_no_error(caplog: pytest.LogCaptureFixture) -> None:
    assert node_metrics.load_nvml("zk0_no_such_nvml") is None
    real = node_metrics.load_nvml()  # pynvml is installed; without a driver it does not initialise
    if real is not None:
        pytest.skip("this machine has NVML")
    text = scrape_text(NodeCollector(idle_pool(), SuperLinkWatch(), nvml=real))
    assert "gpu" not in text and "ERROR" not in caplog.text


class FakeNvml:
    """The one stand-in of these tests: there is no GPU here. GPU 2 has fallen off the bus."""

    def nvmlDeviceGetCount(self) -> int:
        return 3

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        if handle == 2:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        return SimpleNamespace(gpu=[87, 3][handle], memory=10)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(used=(handle + 1) * 2**30, total=80 * 2**30, free=0)


def test_nvml_gives_series_per_gpu_index() -> None:
    got = samples(scrape_text(NodeCollector(idle_pool(), SuperLinkWatch(), nvml=FakeNvml())))
    gpus = {(name, dict(labels)["gpu"]): value for (name, labels), value in got.items() if "gpu" in name}
    assert gpus == {
        ("zk0_node_gpu_utilization_percent", "0"): 87,
        ("zk0_node_gpu_utilization_percent", "1"): 3,
        ("zk0_node_gpu_memory_used_bytes", "0"): 2**30,
        ("zk0_node_gpu_memory_used_bytes", "1"): 2**31,
        ("zk0_node_gpu_memory_total_bytes", "0"): 80 * 2**30,
        ("zk0_node_gpu_memory_total_bytes", "1"): 80 * 2**30,
    }


# ---------------------------------------------------------------- the flag and the listener


@pytest.mark.parametrize("address", ["0.0.0.0:9401", "[::]:9401", ":9401", "[::ffff:0.0.0.0]:9401"])
def test_listening_everywhere_is_refused_with_the_fix(address: str) -> None:
    with pytest.raises(MetricsAddressError, match=r"bind to 127\.0\.0\.1") as err:
        parse_metrics_address(address)
    assert "tailnet address" in str(err.value)


def test_the_launcher_refuses_it_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    assert launcher.main(["--superlink", "link:8000", "--metrics-address", "0.0.0.0:9401"]) == 2
    err = capsys.readouterr().err
    assert "every network" in err and "127.0.0.1" in err and "tailnet" in err
    assert launcher.main(["--superlink", "link:8000", "--metrics-address"]) == 2
    assert "needs HOST:PORT" in capsys.readouterr().err


def test_the_flag_is_the_launchers_own() -> None:
    args = ["--superlink", "l:8000", "--metrics-address", "127.0.0.1:9401", "--port", "9094"]
    assert split_metrics_flag(args) == ("127.0.0.1:9401", ["--superlink", "l:8000", "--port", "9094"])
    assert split_metrics_flag(["--metrics-address=", "--insecure"]) == ("", ["--insecure"])
    assert parse_metrics_address("") is None  # off
    assert parse_metrics_address("127.0.0.1:9401") == ("127.0.0.1", 9401)
    assert parse_metrics_address("localhost:9401")[0] in ("127.0.0.1", "::1")  # a name is resolved
    with pytest.raises(MetricsAddressError, match="port"):
        parse_metrics_address("127.0.0.1:99999")
    spec = launch.SuperNodeSpec("l:8000", None, None, metrics_address="127.0.0.1:9401")
    assert spec.argv()[-2:] == ["--metrics-address", "127.0.0.1:9401"]
    with pytest.raises(ValueError, match="zk0-supernode's flag"):
        launch.SuperNodeSpec("l:8000", None, None, metrics_address="x:1", warm_clientapps=False).argv()


def test_a_real_scrape_on_loopback_names_nothing_of_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset, repo, host = SECRETS
    # What a node knows and must never export: its dataset, repo id and host name...
    monkeypatch.setenv("ZK0_DATASET_URI", f"local:{dataset}")
    monkeypatch.setenv("ZK0_HF_DATASET", f"hf:{repo}")
    monkeypatch.setenv("HOSTNAME", host)
    node_args = ["--superlink", f"{host}:8000", "--node-config", f"dataset-uri='local:{dataset}' repo='{repo}'"]
    _, rest = split_metrics_flag([*node_args, "--metrics-address", "127.0.0.1:0"])
    assert rest == node_args
    # ...in its state directory (a bundle that writes more than numbers) and in its log.
    node_report.write_train_report(2, 30.0, 8.0, 240, directory=tmp_path)
    report = json.loads((tmp_path / node_report.TRAIN_REPORT).read_text())
    (tmp_path / node_report.TRAIN_REPORT).write_text(json.dumps({**report, "dataset": dataset, "repo": repo}))
    (tmp_path / f"{repo.replace('/', '_')}.json").write_text(host)
    port = launch.free_port()
    metrics = NodeMetrics.start("127.0.0.1", port, idle_pool(), tmp_path)
    try:
        assert metrics.address == ("127.0.0.1", port)
        assert not os.get_inheritable(metrics.server.socket.fileno())  # no child process holds it
        metrics.collector.watch.feed(f"INFO :      SuperNode ID: 7 {dataset} {repo} {host}")  # its log
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            assert reply.status == 200
            text = reply.read().decode()
    finally:
        metrics.close()
    got = samples(text)
    assert got[("zk0_node_up", ())] == 1 and got[("zk0_node_superlink_connected", ())] == 1
    assert got[("zk0_node_last_train_duration_seconds", ())] == 30.0
    for secret in (*SECRETS, "alice", "so100", "private-set"):
        assert secret not in text, secret
    real_host = socket.gethostname()
    if len(real_host) >= 4:
        assert real_host not in text
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # closed with the launcher


def test_a_taken_port_stops_the_listener_with_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="in use"):
            NodeMetrics.start("127.0.0.1", taken.getsockname()[1], idle_pool(), None)
