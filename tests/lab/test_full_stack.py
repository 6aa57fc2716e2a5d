"""Full stack: container hosts provisioned by playbooks/site.yml over SSH, training across them.

In file order (each step builds on the lab state the previous one left):
1. site.yml converges the three hosts; a second run changes nothing.
2. A 4-round run across the hosts: two rounds on both clients (the server host's checkpoints
   load with lerobot), then a client host stopped mid-run: the run completes with the other.
3. The server host and a client host rebooted: both stacks come back by themselves.
4. A new node operator follows docs/NODE-OPERATORS.md on a fourth host (air-gapped: the image
   comes as an archive file) with zk0bot installed by scripts/install-zk0bot.sh: the key, a
   start refused before enrollment, the admin's `zk0bot server enroll`, the node training in
   the admin's `zk0bot server run`, then status, logs, stop and the admin's `server remove`.
5. The server's Prometheus recorded it all: rounds, nodes scraped, the lost host's alert.
6. The admin's `zk0bot server backup`, the server's state lost, `zk0bot server restore`: the
   node, refused by the empty database meanwhile, is restarted by Docker and reconnects with
   its key; the 4-round run resumes after its last checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lab import docker as d
from lab import federation, hosts, provision
from lab.config import ROOT, LabConfig
from zk0.deploy.launch import format_node_config

pytestmark = pytest.mark.slow


def _clients_per_round(result: federation.RunResult) -> dict[int, int]:
    return {r["round"]: len(federation.client_losses(r)) for r in result.rounds if r["round"] > 0}


def _as_admin(cfg: LabConfig):
    from zk0.deploy.connection import using_flwr_home

    federation.admin_env(cfg)  # writes the connection
    return using_flwr_home(cfg.flwr_home)


@pytest.mark.timeout(2400)
def test_site_converges_then_changes_nothing(lab: LabConfig) -> None:
    first = provision.playbook(lab, "site.yml", echo=False, log_name="site-1")
    assert set(first) == {"server", "client-1", "client-2"}, first
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in first.values()), first
    assert all(r["changed"] > 0 for r in first.values()), first  # it really provisioned them

    second = provision.playbook(lab, "site.yml", echo=False, log_name="site-2")
    assert {h: r["changed"] for h, r in second.items()} == dict.fromkeys(first, 0), second

    # Real state on the hosts: both client keys registered, SuperNodes healthy.
    with _as_admin(lab):
        from zk0.deploy import enrollment

        registered = {
            n.fingerprint for n in enrollment.list_nodes(federation.CONNECTION) if n.status != enrollment.UNREGISTERED
        }
        for client in lab.clients:
            key = enrollment.load_public_key(lab.state_dir / "fetched" / "node-keys" / f"{client.name}.pub")
            assert enrollment.fingerprint(key) in registered, client.name

    # A client host is not the admin: on both of the proxy's listeners, submitting a run fails.
    knock = (
        "import ssl,sys,urllib.request as u\n"
        "ctx=ssl.create_default_context(); ctx.check_hostname=False; ctx.verify_mode=ssl.CERT_NONE\n"
        "for port in sys.argv[1:]:\n"
        "    try: u.urlopen(u.Request(f'https://{HOST}:{port}/v1/control/start-run', data=b'x', method='POST'),"
        " context=ctx, timeout=10); print(port, 200)\n"
        "    except u.HTTPError as e: print(port, e.code)\n"
    ).replace("{HOST}", lab.server.address)
    out = hosts.ssh(lab, lab.clients[0], f'python3 -c "{knock}" 8000 8001').stdout.split()
    assert out == ["8000", "404", "8001", "401"], out
    # zk0bot's doctor, from the admin machine: the SuperLink answers TLS with a certificate
    # that the lab CA signed for the server's address.
    doctor = subprocess.run(
        [
            str(Path(sys.executable).parent / "zk0bot"),
            "doctor",
            "--check",
            "superlink",
            "--superlink",
            lab.superlink_address,
            "--ca",
            str(lab.pki_dir / "ca.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    for client in lab.clients:
        ps = hosts.ssh(
            lab, client, "docker ps --filter label=com.docker.compose.project=zk0-client --format '{{.Status}}'"
        ).stdout
        assert "(healthy)" in ps, (client.name, ps)


@pytest.mark.timeout(1500)
def test_rounds_across_hosts_then_a_client_host_stopped_mid_run(lab: LabConfig, tmp_path: Path) -> None:
    """One run carries both: two rounds across both client hosts (their checkpoints load with
    lerobot), then client-2 powered off while round 3 is under way (the run completes with the
    host left). One run instead of two: the run's start-up is a minute of the lab's time."""
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    from zk0.model.backbone import BACKBONES, ensure_backbone
    from zk0.model.weights import get_trainable_arrays

    victim = lab.host("client-2")
    name = "fullstack"
    # Both nodes online at the SuperLink before the run (min-nodes 1 samples whoever is).
    with _as_admin(lab):
        from zk0.deploy import enrollment

        keys = [
            enrollment.load_public_key(lab.state_dir / "fetched" / "node-keys" / f"{c.name}.pub") for c in lab.clients
        ]
        deadline = time.monotonic() + 180
        while not all((n := enrollment.find_node(federation.CONNECTION, k)) and n.status == "online" for k in keys):
            assert time.monotonic() < deadline, "the client nodes are not both online"
            time.sleep(3)
    run_id = federation.submit(lab, federation.run_config(4, 6, name, **{"min-nodes": 1, "round-timeout": 90.0}))
    deadline = time.monotonic() + 900
    while not any(r["round"] == 2 for r in federation.round_records(lab, name)):
        assert time.monotonic() < deadline, "round 2 never finished"
        time.sleep(2)
    # Round 3 is under way on both clients: power client-2 off (the whole host). Round 3 may
    # still count it; round 4 cannot.
    d.docker("stop", "-t", "20", victim.container)
    result = federation.follow(lab, run_id, name, timeout=900, echo=False)
    assert result.status == "finished:completed", result
    clients = _clients_per_round(result)
    # Both hosts trained (a node a loaded machine's SuperLink saw as offline for a moment sits
    # out a round), and round 4 ran on the host left.
    assert 2 in (clients[1], clients[2]) and clients[4] == 1, clients
    assert all(np.isfinite(federation.server_eval(r)) for r in result.rounds), result.rounds
    assert result.total_bytes > 0
    # Free its disk before the spare host comes (the lab stays within three image copies).
    hosts.remove_host(lab, victim)

    # The checkpoints live on the server host; copy two out and load them with lerobot. The
    # tiny backbone's path in config.json is the container's: point it at one made here
    # (seeded, so it is the same backbone).
    backbone = ensure_backbone(BACKBONES["tiny"], tmp_path / "cache")
    weights = {}
    for round_dir in ("round_0", "round_2"):
        federation.fetch_checkpoint(lab, name, round_dir, tmp_path)
        config_path = tmp_path / round_dir / "config.json"
        config = json.loads(config_path.read_text())
        config["vlm_model_name"] = str(backbone)
        config_path.write_text(json.dumps(config))
        weights[round_dir] = get_trainable_arrays(SmolVLAPolicy.from_pretrained(str(tmp_path / round_dir)))
    assert all(np.isfinite(a).all() for a in weights["round_2"].values())
    assert any(not np.array_equal(weights["round_2"][n], weights["round_0"][n]) for n in weights["round_0"])


def _stack_healthy(lab: LabConfig, host, project: str) -> bool:
    ps = hosts.ssh(
        lab,
        host,
        f"docker ps -a --filter label=com.docker.compose.project={project} --format '{{{{.Status}}}}'",
        check=False,
    )
    lines = ps.stdout.split("\n") if ps.returncode == 0 else []
    return bool([ln for ln in lines if ln]) and all("(healthy)" in ln for ln in lines if ln)


@pytest.mark.timeout(900)
def test_rebooted_hosts_bring_their_stacks_back_by_themselves(lab: LabConfig) -> None:
    """The server host and client-1 restart as machines do (systemd shuts down, Docker stops the
    containers cleanly, the host boots): no playbook runs, and both stacks come back healthy with
    the node online again. The next test's run trains on client-1 after this."""
    rebooted = [lab.server, lab.host("client-1")]
    started = time.monotonic()
    for host in rebooted:
        d.docker("restart", "-t", "60", host.container, timeout=180)
    hosts.record_host_keys(lab, rebooted)  # waits for SSH; the keys are the same (the disk stayed)
    came_back: dict[str, float] = {}
    deadline = time.monotonic() + 420
    while len(came_back) < len(rebooted):
        assert time.monotonic() < deadline, f"not back within 420 s: only {came_back}"
        for host in rebooted:
            project = "zk0-server" if host.role == "server" else "zk0-client"
            if host.name not in came_back and _stack_healthy(lab, host, project):
                came_back[host.name] = time.monotonic() - started
        time.sleep(3)
    print(f"\nreboot to healthy stack: {', '.join(f'{n} {s:.0f} s' for n, s in came_back.items())}")
    with _as_admin(lab):
        from zk0.deploy import enrollment

        key = enrollment.load_public_key(lab.state_dir / "fetched" / "node-keys" / "client-1.pub")
        deadline = time.monotonic() + 120
        while (node := enrollment.find_node(federation.CONNECTION, key)) is None or node.status != "online":
            assert time.monotonic() < deadline, node
            time.sleep(3)


class _Operator:
    """A person at their own machine: zk0bot from scripts/install-zk0bot.sh in their HOME, the
    host's SSH key in ~/.ssh/known_hosts (they connected once), and nothing from this checkout's
    venvs. Each command's seconds are kept for the test's figures."""

    def __init__(self, home: Path, lab: LabConfig) -> None:
        (home / ".ssh").mkdir(parents=True, mode=0o700)
        shutil.copy(lab.known_hosts, home / ".ssh" / "known_hosts")
        self.home = home
        self.bot = home / ".local" / "bin" / "zk0bot"
        self.env = {
            "HOME": str(home),
            # Their PATH (Python 3.12 is on it) without this checkout's venvs.
            "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not p.startswith(str(ROOT))),
            "LANG": "C.UTF-8",
            "COLUMNS": "200",
            "FLWR_TELEMETRY_ENABLED": "0",
            # This machine's Python 3.12: found here, since pyenv finds it through the real HOME.
            "ZK0BOT_PYTHON": subprocess.run(
                [str(ROOT / "scripts" / "find-python.sh")], capture_output=True, text=True, check=True
            ).stdout.strip(),
        }
        self.seconds: dict[str, float] = {}

    def run(self, label: str, argv: list[str], env: dict[str, str] | None = None, timeout: float = 1500):
        started = time.monotonic()
        result = subprocess.run(
            argv, capture_output=True, text=True, env={**self.env, **(env or {})}, timeout=timeout, check=False
        )
        self.seconds[label] = time.monotonic() - started
        return result

    def zk0bot(self, label: str, *args: str, env: dict[str, str] | None = None):
        return self.run(label, [str(self.bot), *args], env)


@pytest.mark.timeout(2400)
def test_a_new_operator_joins_with_zk0bot(lab: LabConfig, tmp_path: Path) -> None:
    """docs/NODE-OPERATORS.md as written, on a fresh host (the spare: air-gapped, the image comes
    as a `docker save` file, the roles' archive path), and the admin's side of it in zk0bot."""
    spare = lab.spare
    hosts.add_host(lab, spare, archive=hosts.save_image_archive(lab))
    operator = _Operator(tmp_path / "operator", lab)
    installed = operator.run("install (--light)", ["bash", str(ROOT / "scripts" / "install-zk0bot.sh"), "--light"])
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # ssh reads known_hosts in the passwd entry's home (root's here), not $HOME: say where the
    # operator's is, with an ansible_* connection variable (zk0bot saves it for later commands).
    known = f"ansible_ssh_common_args=-o UserKnownHostsFile={operator.home}/.ssh/known_hosts"
    target = ["--host", f"root@{spare.address}", "--ssh-key", str(lab.ssh_key), "--var", known]

    # 1. The key pair, made on the node; the public line goes into the application.
    made = operator.zk0bot("keys create", "keys", "create", *target)
    assert made.returncode == 0, made.stdout + made.stderr
    line = made.stdout.strip().splitlines()[-1]
    assert line.startswith("ecdsa-sha2-nistp384 "), made.stdout
    application = tmp_path / "application.pub"
    application.write_text(line + "\n")

    # 2. Started before the admin enrolled it: refused, and told what to do.
    start = [
        "client",
        "start",
        *target,
        "--dataset",
        f"local:{hosts.DATASET_MOUNT}",
        "--superlink",
        lab.superlink_address,
        "--ca",
        str(lab.pki_dir / "ca.pem"),
        "--image",
        lab.zk0_image,
        "--image-source",
        "archive",
        "--var",
        f"supernode_image_archive={hosts.ARCHIVE_MOUNT}",
        "--var",
        "docker_install_source=distribution",  # Docker's apt repository is not reachable here
        "--var",
        "supernode_hf_hub_offline=true",
        "--var",
        "supernode_health_interval=10",
        "--var",
        "supernode_wait_timeout=60",  # refused: a minute shows it
    ]
    refused = operator.zk0bot("client start (not enrolled)", *start)
    assert refused.returncode != 0, refused.stdout + refused.stderr
    said = " ".join(refused.stderr.split())  # as printed, wrapped to the terminal's width
    assert "did not become healthy" in said and f"send {operator.home}" in said, said[-3000:]
    images = hosts.ssh(lab, spare, "docker images --format '{{.Repository}}:{{.Tag}}'").stdout.split()
    assert images == [lab.zk0_image], images  # loaded from the archive; nothing pulled

    # 3. The admin enrolls the key from the application (zk0bot on the admin's connection).
    federation.admin_env(lab)
    admin = {"FLWR_HOME": str(lab.flwr_home), "ZK0BOT_HOME": str(tmp_path / "admin")}
    connection = ["--connection", federation.CONNECTION]
    enrolled = operator.zk0bot(
        "server enroll", "server", "enroll", str(application), "--name", "spare", *connection, env=admin
    )
    assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr

    # 4. Started again with the saved settings (and the default wait): it joins, and it trains
    # in the admin's next run.
    joined = operator.zk0bot("client start", "client", "start", "--var", "supernode_wait_timeout=300")
    assert joined.returncode == 0, joined.stdout + joined.stderr
    status = operator.zk0bot("client status", "client", "status")
    assert status.returncode == 0 and "healthy" in status.stdout, status.stdout + status.stderr
    nodes = operator.zk0bot("server nodes", "server", "nodes", "--json", *connection, env=admin)
    assert nodes.returncode == 0, nodes.stdout + nodes.stderr
    rows = {r["name"]: r for r in json.loads(nodes.stdout)}
    assert rows["spare"]["status"] == "online", rows
    config = federation.run_config(1, 4, "operator-joins", **{"round-timeout": 120.0})
    ran = operator.zk0bot(
        "server run",
        "server",
        "run",
        "--app",
        str(ROOT),
        "--run-config",
        format_node_config(config),
        *connection,
        env=admin,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "completed after 1 round" in ran.stdout, ran.stdout
    trained = next(r for r in federation.round_records(lab, "operator-joins") if r["round"] == 1)["train"]["clients"]
    assert str(rows["spare"]["node_id"]) in trained, trained

    # 5. The operator's day-to-day commands, then the admin removes the node.
    logs = operator.zk0bot("client logs", "client", "logs", "--tail", "200")
    # Compose prefixes each line with the container's name.
    assert logs.returncode == 0 and "supernode-1" in logs.stdout, logs.stdout[-2000:] + logs.stderr
    stopped = operator.zk0bot("client stop", "client", "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert operator.zk0bot("client status (stopped)", "client", "status").returncode == 1
    removed = operator.zk0bot("server remove", "server", "remove", "spare", *connection, env=admin)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    nodes = operator.zk0bot("server nodes (after remove)", "server", "nodes", "--json", *connection, env=admin)
    assert "spare" not in {r["name"] for r in json.loads(nodes.stdout)}, nodes.stdout
    print("\nnode operator's path, seconds per step: " + ", ".join(f"{k} {v:.0f}" for k, v in operator.seconds.items()))


def _prometheus(lab: LabConfig, path: str) -> dict:
    """GET Prometheus's HTTP API on the server host (it listens on the host's loopback only)."""
    url = f"http://127.0.0.1:9090{path}"
    code = f"import sys,urllib.request as u; sys.stdout.write(u.urlopen('{url}', timeout=20).read().decode())"
    reply = json.loads(hosts.ssh(lab, lab.server, f'python3 -c "{code}"').stdout)
    assert reply["status"] == "success", reply
    return reply["data"]


@pytest.mark.timeout(300)
def test_prometheus_on_the_server_saw_the_rounds_and_the_lost_host(lab: LabConfig) -> None:
    """What the admin's Prometheus (roles/monitoring, scraping every 5 s here) recorded over the
    tests above: the round counter moving during the 4-round run, every node that is up scraped
    on its lab address, and the host powered off mid-run raising ZK0NodeOffline."""
    health = {
        (t["labels"]["job"], t["labels"]["node"]): t["health"]
        for t in _prometheus(lab, "/api/v1/targets")["activeTargets"]
    }
    assert health[("zk0-server", "server")] == "up", health
    assert health[("zk0-nodes", "client-1")] == health[("node", "client-1")] == "up", health
    assert health[("zk0-nodes", "client-2")] == "down", health

    # The round counter as Prometheus stored it: the 4-round run's series climbs to 4.
    now = time.time()
    series = _prometheus(
        lab, f"/api/v1/query_range?query=zk0_run_last_round&start={now - 3600:.0f}&end={now:.0f}&step=5"
    )
    climbs = []
    for s in series["result"]:
        values = [int(float(v)) for _, v in s["values"]]
        if values == sorted(values) and len(set(values)) >= 3:
            climbs.append((s["metric"].get("run"), sorted(set(values))))
    assert any(seen[-1] == 4 for _, seen in climbs), series["result"]
    print(f"\nPrometheus saw the rounds: {climbs}")

    alerts = [
        (a["labels"]["alertname"], a["labels"].get("node"), a["state"])
        for a in _prometheus(lab, "/api/v1/alerts")["alerts"]
    ]
    assert any(name == "ZK0NodeOffline" and node == "client-2" for name, node, _ in alerts), alerts
    rules = {r["name"] for g in _prometheus(lab, "/api/v1/rules")["groups"] for r in g["rules"]}
    assert {"ZK0NodeOffline", "ZK0RoundStalled", "ZK0UpdatesRejected", "ZK0DiskNearlyFull"} <= rules, rules


@pytest.mark.timeout(900)
def test_a_backup_restores_onto_a_server_that_lost_its_state(lab: LabConfig, tmp_path: Path) -> None:
    """SERVER-OPERATORS.md's backup and its move to a fresh server, by the admin's zk0bot:
    `server backup` fetches an archive; the server then loses its state (the stack's volumes
    removed and the stack started again on empty ones, as the role leaves a fresh host: the
    same host, since a new one would add a 7 GB image pull that proves nothing about restore);
    `server restore` puts it back. client-1 is left running throughout, as an operator who
    heard nothing would: refused by the empty database its SuperNode exits, Docker restarts it
    until the restore brings its key back, and it reconnects by itself; the 4-round run resumes
    after its last checkpoint."""
    env = {
        **os.environ,
        "ZK0BOT_HOME": str(tmp_path / "admin"),
        # The admin's ssh reads known_hosts from the passwd home: say where the lab's is.
        "ANSIBLE_SSH_COMMON_ARGS": f"-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes",
    }
    target = ["--host", f"root@{lab.server.address}", "--ssh-key", str(lab.ssh_key)]
    seconds: dict[str, float] = {}

    def zk0bot(label: str, *args: str) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = subprocess.run(
            [str(Path(sys.executable).parent / "zk0bot"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        seconds[label] = time.monotonic() - started
        return result

    name = "fullstack"
    before = [r for r in federation.round_records(lab, name) if 1 <= r["round"] <= 4]
    assert [r["round"] for r in before] == [1, 2, 3, 4], before
    made = zk0bot("server backup", "server", "backup", *target, "--dest", str(tmp_path / "backups"))
    assert made.returncode == 0, made.stdout + made.stderr
    archive = Path(made.stdout.strip().splitlines()[-1])
    assert archive.is_file() and archive.stat().st_mode & 0o777 == 0o600, archive

    restarts = "docker inspect --format '{{.RestartCount}}' zk0-client-supernode-1"
    restarted_before = int(hosts.ssh(lab, lab.host("client-1"), restarts).stdout)
    # The state is lost: a stack on empty volumes knows neither the runs nor the node keys.
    compose = "cd /etc/zk0/server && docker compose -f compose.yml --env-file server.env"
    started = time.monotonic()
    hosts.ssh(lab, lab.server, f"{compose} down --volumes && {compose} up --detach --wait", timeout=600)
    seconds["stack on empty volumes"] = time.monotonic() - started
    assert federation.round_records(lab, name) == []
    with _as_admin(lab):
        from zk0.deploy import enrollment

        client_1 = enrollment.load_public_key(lab.state_dir / "fetched" / "node-keys" / "client-1.pub")
        assert enrollment.find_node(federation.CONNECTION, client_1) is None
    # The node meets the empty database: refused, its SuperNode exits and Docker restarts it.
    started, deadline = time.monotonic(), time.monotonic() + 240
    while int(hosts.ssh(lab, lab.host("client-1"), restarts).stdout) == restarted_before:
        assert time.monotonic() < deadline, "client-1's SuperNode, refused by the empty database, did not exit"
        time.sleep(3)
    seconds["client-1 refused and restarted"] = time.monotonic() - started

    restored = zk0bot("server restore", "server", "restore", str(archive), "--yes", *target)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    with _as_admin(lab):
        from zk0.deploy import enrollment

        started, deadline = time.monotonic(), time.monotonic() + 300  # Docker backs its restarts off to a minute
        while (node := enrollment.find_node(federation.CONNECTION, client_1)) is None or node.status != "online":
            assert time.monotonic() < deadline, f"client-1 did not reconnect after the restore: {node}"
            time.sleep(3)
        seconds["client-1 online again"] = time.monotonic() - started

    config = federation.run_config(5, 6, name, **{"min-nodes": 1, "round-timeout": 90.0, "resume": True})
    result = federation.follow(lab, federation.submit(lab, config), name, timeout=600, echo=False)
    assert result.status == "finished:completed", result
    # Only round 5 ran: rounds 1 to 4 are the restored files, untouched.
    assert [r for r in result.rounds if 1 <= r["round"] <= 4] == before
    assert _clients_per_round(result)[5] == 1, result.rounds
    seconds["resumed round"] = result.seconds
    print(
        f"\nbackup {archive.stat().st_size / 2**20:.1f} MiB; seconds per step: "
        + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
    )
