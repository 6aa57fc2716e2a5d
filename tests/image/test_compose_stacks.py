"""The Compose stacks in docker/compose on one Docker host (needs `docker compose` v2:
scripts/ensure-compose.sh). Server: the proxy, SuperLink, SuperExec and monitor come up healthy
and hardened, only the proxy publishes ports beyond loopback (the monitor's metrics port is on
127.0.0.1 by default), an outsider with ca.pem is refused every Control operation, the
ServerApp's container holds neither the TLS key nor the database, the monitor reads the database
but cannot write its volumes. Client: a dataset
path that does not exist stops the SuperNode at once with the URI error in its logs, and the
restart policy gives up instead of looping.
"""

import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from image_helpers import DOCKER, IMAGE, PROXY_IMAGE, ROOT, STACK_ENV, docker

COMPOSE = ROOT / "docker" / "compose"
ZK0 = str(ROOT / ".venv" / "bin" / "zk0")
RUNTIME_UID = 49999


@pytest.fixture(scope="module", autouse=True)
def compose_v2(image):
    if docker("compose", "version", check=False).returncode != 0:
        if os.environ.get("ZK0_IMAGE_REQUIRED") == "1":
            pytest.fail("docker compose v2 missing (scripts/ensure-compose.sh)")
        pytest.skip("docker compose v2 missing (scripts/ensure-compose.sh)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def compose(project: str, files: list[str], env: dict[str, str], *args: str, timeout=300):
    command = [DOCKER, "compose", "-p", project]
    for name in files:
        command += ["-f", str(COMPOSE / name)]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **STACK_ENV, **env},
        check=False,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    for args in (
        ["pki", "ca", "--dir", str(directory)],
        ["pki", "superlink-cert", "--dir", str(directory), "--san", "127.0.0.1"],
        ["pki", "node-key", "--dir", str(directory)],
        ["admin", "token", str(directory / "admin.token")],
    ):
        subprocess.run([ZK0, *args], check=True, capture_output=True, timeout=60)
    (directory / "superexec.secret").write_bytes(os.urandom(32))
    (directory / "superexec.secret").chmod(0o600)
    for key in ("superlink.key", "supernode.key", "admin.token", "superexec.secret"):
        os.chown(directory / key, RUNTIME_UID, RUNTIME_UID)  # what the roles do
        assert (directory / key).stat().st_mode & 0o077 == 0
    return directory


@pytest.fixture
def stack():
    started = []

    def up(files: list[str], env: dict[str, str]) -> str:
        project = f"zk0-test-{uuid.uuid4().hex[:8]}"
        started.append((project, files, env))
        result = compose(project, files, env, "up", "-d")
        assert result.returncode == 0, result.stderr
        return project

    yield up
    for project, files, env in started:
        compose(project, files, env, "down", "-v", "--timeout", "5")


def container_of(project: str, service: str) -> dict:
    name = docker(
        "ps",
        "-aq",
        "--filter",
        f"label=com.docker.compose.project={project}",
        "--filter",
        f"label=com.docker.compose.service={service}",
    ).stdout.split()[0]
    return json.loads(docker("inspect", name).stdout)[0]


def wait_for(predicate, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def server_env(pki: Path, port: int, admin_port: int, bind: str = "127.0.0.1", metrics_port: int = 0) -> dict[str, str]:
    return {
        "ZK0_METRICS_PORT": str(metrics_port or free_port()),  # ZK0_METRICS_BIND stays the default
        "ZK0_IMAGE": IMAGE,
        "ZK0_PROXY_IMAGE": PROXY_IMAGE,
        "ZK0_CERTS_DIR": str(pki),
        "ZK0_TLS_KEY_FILE": str(pki / "superlink.key"),
        "ZK0_ADMIN_TOKEN_FILE": str(pki / "admin.token"),
        "ZK0_SUPEREXEC_SECRET_FILE": str(pki / "superexec.secret"),
        "ZK0_SUPERLINK_BIND": bind,
        "ZK0_SUPERLINK_PORT": str(port),
        "ZK0_ADMIN_BIND": "127.0.0.1",
        "ZK0_ADMIN_PORT": str(admin_port),
        "ZK0_HF_HUB_OFFLINE": "1",
    }


def test_server_stack_front_door(pki, stack, tmp_path):
    """The hardened server stack: the proxy publishes its listeners, the monitor its metrics
    port on loopback only, nothing else; the outsider is refused."""
    from zk0.deploy import frontdoor

    port, admin_port, metrics_port = free_port(), free_port(), free_port()
    project = stack(["server.yml"], server_env(pki, port, admin_port, metrics_port=metrics_port))
    services = ("proxy", "superlink", "superexec", "monitor")
    published_by = {"proxy": {"8000/tcp", "8001/tcp"}, "monitor": {"9400/tcp"}}

    def healthy():
        return all(container_of(project, s)["State"].get("Health", {}).get("Status") == "healthy" for s in services)

    assert wait_for(healthy, 180, 2), "\n".join(
        docker("logs", container_of(project, s)["Id"]).stderr[-1500:] for s in services
    )
    secrets = [(pki / name).read_text(errors="replace").strip() for name in ("superlink.key", "admin.token")]
    for service in services:
        info = container_of(project, service)
        host = info["HostConfig"]
        assert info["Config"]["User"] == "49999:49999", service
        assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        assert host["PidsLimit"] and host["Memory"], service
        dump = json.dumps(info)
        assert not any(secret in dump for secret in secrets), f"a secret in {service}'s configuration"
        published = {k for k, v in (info["NetworkSettings"]["Ports"] or {}).items() if v}
        assert published == published_by.get(service, set()), (service, published)
    monitor = container_of(project, "monitor")
    assert [b["HostIp"] for b in monitor["NetworkSettings"]["Ports"]["9400/tcp"]] == ["127.0.0.1"]
    assert not any(m.get("RW") for m in monitor["Mounts"]), monitor["Mounts"]  # outputs and state read-only
    superlink = container_of(project, "superlink")
    command = " ".join(superlink["Config"]["Cmd"] or []) + " " + " ".join(superlink["Args"])
    for flag in (
        "--enable-supernode-auth",
        "--disable-runtime-dependency-installation",
        "--isolation=process",
        "--superexec-auth-secret-file",
    ):
        assert flag in command

    # The ServerApp's container cannot read the TLS key or the database (as its process would try).
    superexec = container_of(project, "superexec")["Id"]
    probe = docker(
        "exec",
        superexec,
        "python",
        "-c",
        "import pathlib,sys; paths=['/run/secrets/superlink_key','/var/lib/zk0/superlink.db'];"
        "sys.exit(sum(pathlib.Path(p).exists() for p in paths))",
        check=False,
    )
    assert probe.returncode == 0, "the SuperExec container can see the TLS key or the database"

    # The outsider holds ca.pem and reaches the public port; the admin listener wants the token.
    ca = pki / "ca.pem"
    token = (pki / "admin.token").read_text().strip()
    public = frontdoor.Target("public", f"127.0.0.1:{port}", ca)
    no_token = frontdoor.Target("admin, no token", f"127.0.0.1:{admin_port}", ca)
    admin = frontdoor.Target("admin, token", f"127.0.0.1:{admin_port}", ca, token)
    app = ROOT / "bench" / "numpy_app"
    results = [
        *frontdoor.probe_control(public, tmp_path, app, 1, 1, "refused"),
        *frontdoor.probe_routes(public, "refused"),
        *frontdoor.probe_routes(no_token, "refused"),
        *frontdoor.probe_routes(admin, "refused"),
    ]
    ok, said = frontdoor.flwr(admin.home(tmp_path), "ls", "target", "--format", "json")
    results.append(
        frontdoor.Result("admin, token", "flwr ls", "allowed", ("allowed" if ok else "refused") + f" ({said})")
    )
    ok, said = frontdoor.flwr(no_token.home(tmp_path), "ls", "target", "--format", "json")
    results.append(
        frontdoor.Result("admin, no token", "flwr ls", "refused", ("allowed" if ok else "refused") + f" ({said})")
    )
    print("\n" + frontdoor.table(results))
    assert all(r.ok for r in results), frontdoor.table([r for r in results if not r.ok])

    # State on the volume, owned by the runtime user.
    listing = docker("exec", superlink["Id"], "ls", "-ln", "/var/lib/zk0").stdout
    assert "superlink.db" in listing and f" {RUNTIME_UID} " in listing

    # The monitor reads the SuperLink's (WAL) database through its read-only mount.
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
        scraped = reply.read().decode()
    assert "zk0_superlink_db_up 1.0" in scraped and "zk0_monitor_outputs_up 1.0" in scraped, scraped


def test_client_with_missing_dataset_fails_fast_without_hot_loop(pki, stack, tmp_path):
    dataset_dir = tmp_path / "datasets"
    dataset_dir.mkdir()
    env = {
        "ZK0_IMAGE": IMAGE,
        "ZK0_SUPERLINK": "127.0.0.1:9",
        "ZK0_CA_CERT": str(pki / "ca.pem"),
        "ZK0_NODE_KEY_FILE": str(pki / "supernode.key"),
        "ZK0_DATASET_DIR": str(dataset_dir),
        "ZK0_DATASET_URI": "local:/data/dataset/so100-does-not-exist",
    }
    project = stack(["client.yml"], env)

    # unless-stopped (a rebooted host brings its node back) with Docker's doubling delay between
    # starts: it keeps failing, each start with the error, and slows down instead of looping hot.
    def failed_thrice():
        state = container_of(project, "supernode")
        return state if state["RestartCount"] >= 3 else None

    info = wait_for(failed_thrice, 120, 1)
    assert info, container_of(project, "supernode")["State"]
    first = info["RestartCount"]
    time.sleep(20)
    info = container_of(project, "supernode")
    # The missing path fails in a fraction of a second: with no delay 20 s would hold hundreds of
    # starts. Docker's delay doubles from 0.1 s (0.1 x (2^n - 1) s before start n): some 8 in all.
    assert info["RestartCount"] - first <= 6 and info["RestartCount"] <= 10, (first, info["RestartCount"])
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert info["State"]["ExitCode"] != 0 or info["State"]["Status"] == "restarting"
    logs = docker("logs", info["Id"])
    text = logs.stdout + logs.stderr
    assert "/data/dataset/so100-does-not-exist does not exist" in text, text[-2000:]
    assert "dataset-uri" in text
