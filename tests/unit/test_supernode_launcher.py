"""zk0-supernode: its reading of flower-supernode's arguments, and the warm ClientApp pool."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import types

import pytest
from flwr.supercore.constant import TaskType
from flwr.supercore.superexec.executor import ExecutionSpec, LaunchResultStatus

from zk0.supernode import launcher
from zk0.supernode.pool import PoolConfig, WarmClientAppPool, _forget_app_modules


@pytest.mark.parametrize(
    ("args", "address"),
    [
        ([], "127.0.0.1:9094"),
        (["--superlink", "link:8000", "--port", "9100"], "127.0.0.1:9100"),
        (["--host=0.0.0.0", "--port=9200"], "127.0.0.1:9200"),
        (["--host", "10.0.0.5"], "10.0.0.5:9094"),
    ],
)
def test_runtime_api_address_follows_the_supernode_flags(args: list[str], address: str) -> None:
    assert launcher.runtime_api_address(args) == address


def test_isolation_flag_is_refused_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    assert launcher.main(["--superlink", "link:8000", "--isolation", "subprocess"]) == 2
    err = capsys.readouterr().err
    assert "drop --isolation" in err and "flower-supernode" in err


def test_runtime_api_tls_is_refused_with_the_fix() -> None:
    with pytest.raises(launcher.UsageError, match="drop --ssl-certfile"):
        launcher.runtime_api_address(["--ssl-certfile", "a.pem", "--ssl-keyfile", "a.key"])


@pytest.mark.parametrize("raw", ["fast", "0", "61", "nan"])
def test_poll_interval_must_be_sane(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(launcher.POLL_ENV, raw)
    with pytest.raises(launcher.UsageError, match=launcher.POLL_ENV):
        launcher._poll_interval()


def test_poll_interval_defaults_to_flowers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(launcher.POLL_ENV, raising=False)
    assert launcher._poll_interval() == 1.0
    monkeypatch.setenv(launcher.POLL_ENV, "0.25")
    assert launcher._poll_interval() == 0.25


def test_app_modules_are_forgotten_so_the_bundle_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("appx", "appx.client_app", "appxtra"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    dropped = _forget_app_modules(("appx",))
    assert sorted(dropped) == ["appx", "appx.client_app"]
    assert "appx" not in sys.modules and "appxtra" in sys.modules  # a prefix is not a package


def _spec(task_type: TaskType) -> ExecutionSpec:
    return ExecutionSpec(
        task_type=task_type,
        runtime_api_address="127.0.0.1:1",
        token="t",
        insecure=True,
        root_certificates_path=None,
        runtime_dependency_install=False,
        parent_pid=None,
        suppress_output=False,
        task_id=7,
    )


def test_pool_takes_clientapp_tasks_only() -> None:
    pool = WarmClientAppPool(PoolConfig(preload=("colorsys",)))
    types_, hashes = pool.get_eligible_capacity(set(TaskType))
    assert types_ == {TaskType.CLIENT_APP} and hashes == set()
    result = pool.launch(_spec(TaskType.SERVER_APP))
    assert result.status == LaunchResultStatus.FAILED and "ClientApp tasks only" in (result.message or "")
    assert pool.launched == 0


def _warm_up_in_fresh_interpreter(module: str) -> subprocess.CompletedProcess[str]:
    # The fork server is one per interpreter (multiprocessing's), as it is one per zk0-supernode.
    code = (
        "from zk0.supernode.pool import PoolConfig, WarmClientAppPool\n"
        f"pool = WarmClientAppPool(PoolConfig(preload=({module!r},)))\n"
        "try:\n    print('warm', pool.warm_up())\nfinally:\n    pool.close()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)


def test_pool_warms_up_with_its_preload() -> None:
    proc = _warm_up_in_fresh_interpreter("colorsys")  # a module nothing imports by default
    assert proc.returncode == 0 and proc.stdout.startswith("warm "), proc.stderr


def test_pool_that_cannot_preload_says_so() -> None:
    proc = _warm_up_in_fresh_interpreter("zk0_no_such_module")
    assert proc.returncode != 0
    assert "could not preload zk0_no_such_module" in proc.stderr and "import zk0.supernode.preload" in proc.stderr


def test_runtime_api_secret_is_fresh_private_and_ours(tmp_path) -> None:
    first, secret = launcher.write_secret(tmp_path)
    assert len(secret) == 32 and first.read_bytes() == secret
    assert first.stat().st_mode & 0o777 == 0o600
    other = tmp_path / "other"
    other.mkdir()
    assert launcher.write_secret(other)[1] != secret  # random per start


def test_a_secret_flag_of_our_own_is_refused() -> None:
    with pytest.raises(launcher.UsageError, match="drop --superexec-auth-secret-file"):
        launcher.runtime_api_address(["--superexec-auth-secret-file", "s"])


def test_a_malformed_superlink_address_or_port_stops_the_launcher_with_the_rule() -> None:
    from zk0.supernode.launcher import UsageError, runtime_api_address

    for args, says in (
        (["--superlink", "https://link.example.org:8000"], "has a scheme"),
        (["--superlink", "link.example.org:99999"], "is not 1-65535"),
        (["--superlink", "link.example.org:8000", "--port", "0"], "--port"),
    ):
        with pytest.raises(UsageError, match=says):
            runtime_api_address(args)
    assert runtime_api_address(["--superlink", "link.example.org:8000", "--port", "9095"]) == "127.0.0.1:9095"


def _exited() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    return proc


def test_runtime_api_retries_end_once_the_supernode_has_exited() -> None:
    import httpx
    from flwr.supercore.retry import make_simple_http_retry_invoker

    calls: list[int] = []

    def unreachable() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused")
        return "answered"

    # While the SuperNode runs, Flower's retries stand (its API may be restarting) ...
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        invoker = launcher.retry_while_running(make_simple_http_retry_invoker(), running, threading.Event())
        assert invoker.invoke(unreachable) == "answered" and len(calls) == 2
    finally:
        running.kill()
        running.wait()
    # ... once it has exited, its API is gone for good: the first failure is the last.
    calls.clear()
    invoker = launcher.retry_while_running(make_simple_http_retry_invoker(), _exited(), threading.Event())
    with pytest.raises(httpx.ConnectError):
        invoker.invoke(unreachable)
    assert len(calls) == 1


def test_a_supernode_that_exits_during_the_warm_up_is_not_kept_waiting_for_it(tmp_path) -> None:
    (tmp_path / "zk0_slow_import.py").write_text("import time\ntime.sleep(30)\n")
    code = (
        "import subprocess, sys, threading\n"
        "from zk0.supernode import launcher\n"
        "from zk0.supernode.pool import PoolConfig, WarmClientAppPool\n"
        "pool = WarmClientAppPool(PoolConfig(preload=('zk0_slow_import',)))\n"
        "refused = subprocess.Popen([sys.executable, '-c', 'raise SystemExit(3)'])\n"
        "warm = launcher.warm_up_while_running(pool, refused, threading.Event())\n"
        "print('warm' if warm else 'gone', refused.returncode, pool.ready)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out, err = tmp_path / "out", tmp_path / "err"  # files: the fork server, still importing, holds pipes open
    with out.open("w") as stdout, err.open("w") as stderr:
        status = subprocess.run(
            [sys.executable, "-c", code], stdout=stdout, stderr=stderr, env=env, timeout=60, check=False
        )
    assert status.returncode == 0, err.read_text()
    assert out.read_text().split() == ["gone", "3", "False"]
