"""Nodes run only the app bundles they trust: a real TLS federation on loopback, two
zk0-supernodes, the release zk0 app and a copy of it with one changed line.

The changed line writes a marker file when the ClientApp module is imported, to the path in
the node's ZK0_TEST_MARKER. The node that trusts the modified bundle imports it (the marker
proves the line works); the node that trusts only the release refuses it before any of its
code runs (no marker), tells the server only that it does not trust the app, and trains the
release app right after."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from zk0.cli import app as zk0_cli
from zk0.deploy.loopback import Credentials, Loopback

pytestmark = pytest.mark.slow

RUN = {
    "model": "tiny",
    "num-server-rounds": 1,
    "local-steps": 1,
    "batch-size": 4,
    "eval-batches": 1,
    "server-eval-every": 0,
    "server-eval-datasets": "synthetic:server-eval-a",
}
CHANGED = 'log = logging.getLogger("zk0.client")'
MARKER_LINE = (
    CHANGED
    + '; (m := __import__("os").environ.get("ZK0_TEST_MARKER")) and __import__("pathlib").Path(m).write_text("x")'
)


def _unpack(fab: bytes, into: Path) -> Path:
    """An app directory with exactly the FAB's files: `flwr run` of it rebuilds the same FAB."""
    with zipfile.ZipFile(io.BytesIO(fab)) as z:
        for name in z.namelist():
            if not name.startswith(".info/"):
                (into / name).parent.mkdir(parents=True, exist_ok=True)
                (into / name).write_bytes(z.read(name))
    return into


def _acquire_task_without_the_secret(port: int) -> None:
    """What another local process would try: take the node's next task from its Runtime API."""
    from flwr.proto.runtime_pb2 import AcquireTaskRequest
    from flwr.supercore.constant import TaskType
    from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
    from flwr.supercore.runtime import RuntimeHttpClient

    client = RuntimeHttpClient.from_server_address(
        server_address=f"127.0.0.1:{port}",
        insecure=True,
        root_certificates=None,
        interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec")],
        retry_invoker=None,  # Flower's invoker SIGINTs its own process on a 401
    )
    try:
        client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP]))
    finally:
        client.close()


def _hash(app: Path) -> str:
    result = CliRunner().invoke(zk0_cli, ["app", "hash", str(app)])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def _runtime_port(fed: Loopback, name: str) -> int:
    argv = fed.processes[name].argv
    return int(argv[argv.index("--port") + 1])


@pytest.fixture
def fed(tmp_path: Path, creds: Credentials, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    cache = tmp_path_factory.getbasetemp() / "zk0-cache"  # tiny backbone, shared with test_zk0_app
    env = {"ZK0_CACHE_DIR": str(cache), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    loopback = Loopback(tmp_path, creds, env=env)
    try:
        yield loopback
    finally:
        loopback.close()


@pytest.mark.timeout(900)  # about 4 min alone; CI runs it beside the image build and the lab push
def test_a_node_refuses_an_app_it_does_not_trust_before_any_of_its_code_runs(
    fed: Loopback, release_fab: bytes, release_hashes: dict[str, str], tmp_path: Path
) -> None:
    from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset

    release = _unpack(release_fab, tmp_path / "release" / "zk0")
    assert _hash(release) == release_hashes["zk0"]  # the copy is the release, byte for byte
    modified = _unpack(release_fab, tmp_path / "modified" / "zk0")
    client_app = modified / "zk0" / "client_app.py"
    source = client_app.read_text()
    assert source.count(CHANGED + "\n") == 1
    client_app.write_text(source.replace(CHANGED + "\n", MARKER_LINE + "\n"))
    modified_hash = _hash(modified)
    assert modified_hash != release_hashes["zk0"]

    fed.start_superlink()
    markers = {}
    for name, extra in (("strict", ""), ("trusting", modified_hash)):
        key = fed.creds.node(f"trust-{name}")
        fed.register(key)
        root = write_synthetic_dataset(
            tmp_path / "data" / name, SyntheticDatasetConfig(episodes=4, frames_per_episode=20)
        )
        markers[name] = tmp_path / f"marker-{name}"
        env = {"ZK0_TEST_MARKER": str(markers[name]), **({"ZK0_TRUSTED_APP_HASHES": extra} if extra else {})}
        fed.start_node(name, fed.node_spec(key, {"dataset-uri": f"local:{root}"}), extra_env=env)
    for name in markers:
        fed.wait_ready(name)
    # The node's Runtime API hands tasks only to its own zk0-supernode (a secret made per start).
    with pytest.raises(httpx.HTTPStatusError, match="401"):
        _acquire_task_without_the_secret(_runtime_port(fed, "strict"))

    # The modified app: only the node that trusts it trains; the other one refuses it.
    out = tmp_path / "outputs"
    run_id = fed.submit(modified, {**RUN, "min-nodes": 1, "output-dir": str(out), "run-name": "modified"})
    info = fed.wait_finished(run_id, timeout=360)
    assert info["status"] == "finished:completed", fed.tails()
    train = json.loads((out / "modified" / "metrics" / "round_1.json").read_text())["train"]
    assert len(train["clients"]) == 1 and train["failed"] == 1, train
    assert markers["trusting"].is_file(), "the marker line never ran: the test proves nothing"
    assert not markers["strict"].exists(), "code of an untrusted bundle ran on the strict node"
    strict = fed.processes["strict"]
    assert f"refused an app bundle with SHA-256 {modified_hash}" in strict.output(), strict.output()[-3000:]
    assert "ZK0_TRUSTED_APP_HASHES" in strict.output()
    server_log = fed.processes["superlink"].output()
    if "failed:" in server_log:  # where the ServerApp's lines reach the SuperLink's log
        assert "this app is not trusted by this node" in server_log, server_log[-3000:]
        assert modified_hash not in server_log  # the reply names nothing of the node

    # The release app right after: the strict node is still up and trains it.
    run_id = fed.submit(release, {**RUN, "min-nodes": 2, "output-dir": str(out), "run-name": "release"})
    info = fed.wait_finished(run_id, timeout=360)
    assert info["status"] == "finished:completed", fed.tails()
    train = json.loads((out / "release" / "metrics" / "round_1.json").read_text())["train"]
    assert len(train["clients"]) == 2 and train["failed"] == 0, train
    assert f"app bundle {release_hashes['zk0'][:12]} is trusted" in strict.output()
    assert not markers["strict"].exists()
