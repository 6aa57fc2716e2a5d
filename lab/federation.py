"""Submit a run to the lab's SuperLink as its admin, follow it round by round, and summarise.

The controller is the admin machine: its `flwr` connection (in .lab/flwr, not ~/.flwr)
points at the proxy's admin listener on the server host's lab address, with the lab CA and
the admin token that the superlink role made (`zk0 admin login`, done here). Per-round
figures come from the ServerApp's round files on the server host, read over SSH as an
operator would; bytes on the wire come from `flwr ls`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field

from lab.config import ROOT, LabConfig
from lab.docker import LabError
from lab.hosts import ssh

CONNECTION = "zk0-lab"
OUTPUTS = "/home/zk0/outputs"  # the server stack's outputs volume inside the SuperExec container
SUPERLINK = (
    "docker ps -q --filter label=com.docker.compose.project=zk0-server "
    "--filter label=com.docker.compose.service=superexec"
)  # where ServerApps run and write


@dataclass
class RunResult:
    run_id: int
    run_name: str
    status: str
    rounds: list[dict] = field(default_factory=list)
    total_bytes: int = 0
    seconds: float = 0.0

    @property
    def checkpoint_dir(self) -> str:
        return f"{OUTPUTS}/{self.run_name}/checkpoints"


def admin_env(cfg: LabConfig) -> dict[str, str]:
    from zk0.deploy import admin_auth, connection, launch

    connection.write_connection(CONNECTION, cfg.admin_address, cfg.pki_dir / "ca.pem", home=cfg.flwr_home)
    admin_auth.login(CONNECTION, admin_auth.read_token(cfg.pki_dir / "admin.token"), home=cfg.flwr_home)
    return launch.flower_env(cfg.flwr_home)


def run_config(rounds: int, local_steps: int, run_name: str, **overrides: object) -> dict:
    config = {
        "model": "tiny",
        "num-server-rounds": rounds,
        "local-steps": local_steps,
        "batch-size": 4,
        "eval-batches": 2,
        "min-nodes": 2,
        "output-dir": OUTPUTS,
        "run-name": run_name,
    }
    config.update(overrides)
    return config


def submit(cfg: LabConfig, config: dict) -> int:
    from zk0.deploy import launch
    from zk0.deploy.loopback import flwr_json

    result = flwr_json(
        ["run", str(ROOT), CONNECTION, "--run-config", launch.format_node_config(config)], admin_env(cfg), timeout=300
    )
    if not result.get("success"):
        raise LabError(f"flwr run was refused: {result}. Is the server converged (`python -m lab converge`)?")
    return int(result["run-id"])


def run_info(cfg: LabConfig, run_id: int) -> dict:
    from zk0.deploy.loopback import flwr_json

    listing = flwr_json(["ls", CONNECTION, "--run-id", str(run_id)], admin_env(cfg))
    runs = listing.get("runs") or [{}]
    return runs[0]


def round_records(cfg: LabConfig, run_name: str) -> list[dict]:
    """Every round file the ServerApp wrote so far for `run_name`, read on the server host."""
    script = (
        "import glob,json;print(json.dumps([json.load(open(f)) for f in "
        f"glob.glob('{OUTPUTS}/{run_name}/metrics/round_*.json')]))"
    )
    out = ssh(cfg, cfg.server, f'docker exec $({SUPERLINK}) python -c "{script}"', check=False)
    if out.returncode != 0:
        return []
    try:
        return sorted(json.loads(out.stdout.strip().splitlines()[-1]), key=lambda r: r["round"])
    except (ValueError, IndexError):
        return []


def follow(cfg: LabConfig, run_id: int, run_name: str, timeout: float, echo: bool = True) -> RunResult:
    """Poll until the run finishes, printing each round as its record appears."""
    started = time.monotonic()
    shown: set[int] = set()
    status = ""
    while time.monotonic() - started < timeout:
        info = run_info(cfg, run_id)
        status = str(info.get("status", ""))
        records = round_records(cfg, run_name)
        for record in records:
            if record["round"] not in shown and echo:
                shown.add(record["round"])
                print(format_round(record), flush=True)
        if status.startswith("finished"):
            traffic = info.get("network-traffic") or {}
            return RunResult(
                run_id, run_name, status, records, int(traffic.get("total-bytes", 0)), time.monotonic() - started
            )
        time.sleep(3)
    raise LabError(
        f"run {run_id} not finished after {timeout:.0f} s (status {status!r}): "
        "see `python -m lab status` and the stacks' logs on the hosts."
    )


def client_losses(record: dict) -> dict[str, float]:
    clients = (record.get("train") or {}).get("clients") or {}
    # Keyed by node id in the round file; shown by the node's anonymous dataset label.
    return {
        c.get("dataset-label", node): float(c["train-loss"]) for node, c in sorted(clients.items()) if "train-loss" in c
    }


def server_eval(record: dict) -> float | None:
    value = (record.get("server-eval") or {}).get("mean")
    return None if value is None else float(value)


def format_round(record: dict) -> str:
    losses = ", ".join(f"{v:.3f}" for v in client_losses(record).values()) or "-"
    ev = server_eval(record)
    return (
        f"round {record['round']}: server eval {ev:.3f}" if ev is not None else f"round {record['round']}:"
    ) + f" | client train losses {losses} | {record.get('seconds', 0):.1f} s"


def summary_table(result: RunResult) -> str:
    trained = [r for r in result.rounds if r["round"] > 0]
    per_round_bytes = result.total_bytes / max(len(trained), 1)
    lines = [
        (
            f"run {result.run_id} ({result.run_name}): {result.status}, {len(trained)} rounds "
            f"(round 0: the server evaluates the initial model), {result.seconds:.0f} s"
        ),
        "",
        "| round | server eval loss | client train losses | bytes (wire) | seconds |",
        "|---:|---:|---|---:|---:|",
    ]
    for record in result.rounds:
        ev = server_eval(record)
        losses = ", ".join(f"{v:.3f}" for v in client_losses(record).values()) or "-"
        wire = f"{per_round_bytes:,.0f}" if record["round"] > 0 else "-"
        seconds = f"{float(record.get('seconds', 0)):.1f}" if record["round"] > 0 else "-"
        lines.append(f"| {record['round']} | {'-' if ev is None else f'{ev:.3f}'} | {losses} | {wire} | {seconds} |")
    lines += [
        "",
        f"bytes on the wire: {result.total_bytes:,} for the run (flwr ls), shown per round as the mean",
        f"checkpoints: on host server, in the SuperLink container, {result.checkpoint_dir}/round_<N>",
        (
            f"  copy them out: ssh -i .lab/ssh/id_ed25519 -o UserKnownHostsFile=.lab/ssh/known_hosts "
            f'root@{LabConfig().server.address} "docker cp $({SUPERLINK}):{result.checkpoint_dir} -" | tar -x'
        ),
    ]
    return "\n".join(lines)


def run(
    cfg: LabConfig,
    rounds: int = 3,
    local_steps: int = 10,
    timeout: float = 1800,
    run_name: str | None = None,
    **overrides: object,
) -> RunResult:
    name = run_name or time.strftime("lab-%Y%m%d-%H%M%S")
    run_id = submit(cfg, run_config(rounds, local_steps, name, **overrides))
    print(
        f"lab: run {run_id} submitted ({rounds} rounds of the tiny SmolVLA, {local_steps} local steps)",
        file=sys.stderr,
        flush=True,
    )
    return follow(cfg, run_id, name, timeout)


def fetch_checkpoint(cfg: LabConfig, run_name: str, round_dir: str, dest) -> None:
    """Copy a checkpoint directory from the server host to `dest` (tar over SSH)."""
    import io
    import tarfile

    out = ssh(cfg, cfg.server, f"docker cp $({SUPERLINK}):{OUTPUTS}/{run_name}/checkpoints/{round_dir} -", binary=True)
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        tar.extractall(dest, filter="data")
