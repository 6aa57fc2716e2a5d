"""Deployment runtime benchmark: zk0's tiny-SmolVLA federation vs a trivial numpy app.

Both run in one session on the same loopback federation (one TLS SuperLink with node auth,
two SuperNodes), so the ratio isolates what zk0 adds on top of Flower's own per-round floor.
That is measured twice: with SuperNodes on Flower's ``flower-supernode`` (a fresh ClientApp
interpreter per message) and on ``zk0-supernode`` (ClientApps forked from a preloaded pool,
what zk0's stacks run). Then a ClientApp-side breakdown (imports, model build, dataset open,
training, evaluation; fresh and forked) says where the seconds go, and `flwr ls` gives the
bytes on the wire.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NUMPY_APP = REPO / "bench" / "numpy_app"
ROUNDS = 3
TINY_RUN = {"model": "tiny", "local-steps": 3, "batch-size": 4, "eval-batches": 1, "min-nodes": 2}

# One ClientApp message, step by step: what the SuperNode's ClientApp process does after the
# engine hands it a train message. Cold: a fresh `flwr-clientapp` interpreter (Flower's
# subprocess isolation). Warm: a process forked from zk0-supernode's preloaded pool.
_PROBE_HEAD = r"""
import json, os, resource, sys, time, tomllib
def now():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), r.ru_utime + r.ru_stime
t = [now()]
steps = {}
def lap(name):  # wall and CPU seconds: CPU stays meaningful on a busy shared machine
    t.append(now()); steps[name] = [t[-1][0] - t[-2][0], t[-1][1] - t[-2][1]]
"""
_PROBE_COLD_IMPORTS = r"""
import flwr.supernode.runtime.run_clientapp
lap("process start: flwr runtime import")
import zk0.client_app
lap("import zk0.client_app (torch, flwr app)")
zk0.client_app._import_and_freeze()  # lerobot's modules, as the ClientApp imports them
import lerobot.policies.smolvla.modeling_smolvla
lap("import lerobot (torchvision, torch._dynamo, datasets, transformers)")
"""
_PROBE_WARM_FORK = r"""
import zk0.supernode.preload
lap("preload (once per SuperNode start, not per message)")
if os.fork():
    os.wait()
    sys.exit(0)
t[-1] = (t[-1][0], 0.0)  # a child's CPU count starts at zero
lap("fork from the warm pool")
import zk0.client_app
zk0.client_app._import_and_freeze()
lap("import zk0.client_app (its imports preloaded)")
"""
_PROBE_STEPS = r"""
from zk0.config import FederationSettings
from zk0.data.loading import open_metadata
from zk0.model.weights import get_trainable_arrays
from zk0.node import NodeTrainer
cfg = tomllib.load(open(sys.argv[1], "rb"))["tool"]["flwr"]["app"]["config"]
cfg.update(json.loads(sys.argv[2]))
settings = FederationSettings.from_run_config(cfg)
open_metadata(sys.argv[3])
lap("dataset metadata + schema check")
trainer = NodeTrainer(settings, sys.argv[3])
lap("model build (policy, processors)")
trainer.train_dataset, trainer.eval_dataset
lap("dataset open (train + eval episodes)")
arrays = get_trainable_arrays(trainer.policy)
trainer.evaluate(arrays)
lap("eval (received weights, held-out episodes)")
trainer.train(arrays, 1, settings.proximal_mu)
lap("train (local-steps)")
print(json.dumps(steps), flush=True)
"""
PROBE = _PROBE_HEAD + _PROBE_COLD_IMPORTS + _PROBE_STEPS
WARM_PROBE = _PROBE_HEAD + _PROBE_WARM_FORK + _PROBE_STEPS
PRELOAD_STEP = "preload (once per SuperNode start, not per message)"

NUMPY_PROBE = r"""
import json, resource, time
def now():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), r.ru_utime + r.ru_stime
t0 = now()
import flwr.supernode.runtime.run_clientapp
t1 = now()
import numpy_app.client_app
t2 = now()
print(json.dumps({"process start: flwr runtime import": [t1[0] - t0[0], t1[1] - t0[1]],
                  "import numpy_app.client_app": [t2[0] - t1[0], t2[1] - t1[1]]}))
"""


def _numpy_rounds(rounds_json: Path) -> list[dict[str, float]]:
    """Per round: seconds of its train phase and of its evaluate phase (server clock)."""
    data = json.loads(rounds_json.read_text())
    out, previous = [], 0.0
    for r in range(1, ROUNDS + 1):
        train_done, eval_done = data[str(r)]["train-done-s"], data[str(r)].get("eval-done-s")
        end = eval_done if eval_done is not None else train_done
        out.append({"round": end - previous, "train": train_done - previous, "evaluate": end - train_done})
        previous = end
    return out


def _zk0_rounds(run_dir: Path) -> tuple[list[dict], int]:
    records = [json.loads((run_dir / "metrics" / f"round_{r}.json").read_text()) for r in range(1, ROUNDS + 1)]
    return records, int(records[-1].get("bytes-per-client", 0))


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def _federation(base: Path, warm: bool):
    from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset
    from zk0.deploy.loopback import Credentials, Loopback

    datasets = [
        write_synthetic_dataset(base / f"ds{i}", SyntheticDatasetConfig(episodes=4, frames_per_episode=20, seed=i + 1))
        for i in range(2)
    ]
    from zk0.model.backbone import BACKBONES, ensure_backbone

    # The tiny backbone is built once per cache, as a real node downloads SmolVLA once: not a round's cost.
    ensure_backbone(BACKBONES[TINY_RUN["model"]], base / "cache")
    from zk0.supernode import trust

    # The nodes run only apps they trust: the two this benchmark submits.
    trusted = " ".join(trust.app_hash(app) for app in (REPO, NUMPY_APP))
    env = {
        "ZK0_CACHE_DIR": str(base / "cache"),
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
        trust.HASHES_ENV: trusted,
    }
    fed = Loopback(base / "fed", Credentials(base / "pki"), env=env)
    fed.start_superlink()
    for i, root in enumerate(datasets):
        key = fed.creds.node(f"bench{i}")
        fed.register(key)
        spec = fed.node_spec(key, {"dataset-uri": f"local:{root}", "node-tag": i}, warm_clientapps=warm)
        fed.start_node(f"node{i}", spec)
    for i in range(len(datasets)):  # measure rounds, not start-up: connected, pool warm
        fed.wait_ready(f"node{i}")
    return fed


RUNTIMES = {
    "flower": ("flower-supernode", "Flower's subprocess isolation: a fresh flwr-clientapp per message", False),
    "zk0": ("zk0-supernode", "zk0's warm ClientApp pool: a process forked from a preloaded parent", True),
}


def _measure(warm: bool) -> dict | None:
    """numpy, zk0, numpy again on one loopback federation; None when a run did not complete."""
    with tempfile.TemporaryDirectory(prefix="zk0-bench-deploy-") as tmp:
        base = Path(tmp)
        fed = _federation(base, warm)
        load = [os.getloadavg()[0]]
        try:
            # numpy before and after zk0: on a shared machine the load drifts, and the floor
            # should be measured under the same conditions as the run it is compared with.
            infos = {}
            access_log = fed.logs / "proxy-access.log"
            for name, app, config in (
                ("numpy-before", NUMPY_APP, {"output-dir": str(base / "np-before")}),
                ("zk0", REPO, {**TINY_RUN, "output-dir": str(base / "zk0-out"), "run-name": "b"}),
                ("numpy-after", NUMPY_APP, {"output-dir": str(base / "np-after")}),
            ):
                seen = access_log.stat().st_size if access_log.exists() else 0
                run_id = fed.submit(app, {**config, "num-server-rounds": ROUNDS})
                infos[name] = fed.wait_finished(run_id, timeout=900)
                infos[name]["proxy"] = _proxy_share(access_log, seen)
                load.append(os.getloadavg()[0])
        finally:
            fed.close()
        if any(info["status"] != "finished:completed" for info in infos.values()):
            print("runs did not complete: " + ", ".join(f"{k} {v['status']}" for k, v in infos.items()))
            return None
        np_rounds = _numpy_rounds(base / "np-before" / "rounds.json") + _numpy_rounds(base / "np-after" / "rounds.json")
        zk_records, weight_bytes = _zk0_rounds(base / "zk0-out" / "b")
        return {"np": np_rounds, "zk": zk_records, "weights": weight_bytes, "infos": infos, "load": load}


def _proxy_share(access_log: Path, offset: int) -> dict[str, float]:
    """Requests through the proxy since ``offset`` and the proxy's own seconds (request time
    minus the SuperLink's), from nginx's access log (zk0/deploy/proxy/nginx.conf.template)."""
    requests, own = 0, 0.0
    if access_log.exists():
        with access_log.open("rb") as fh:
            fh.seek(offset)
            for line in fh.read().decode(errors="replace").splitlines():
                fields = line.rsplit(" ", 2)
                try:
                    total, upstream = float(fields[1]), sum(float(x) for x in fields[2].split(","))
                except (IndexError, ValueError):
                    continue  # answered by the proxy itself ("-" upstream)
                requests += 1
                own += max(total - upstream, 0.0)
    return {"requests": requests, "seconds": own}


def run() -> None:
    results = {}
    for key, (command, what, warm) in RUNTIMES.items():
        print(f"## SuperNodes run {command} ({what})")
        result = _measure(warm)
        if result is None:
            return
        print(f"load average (1 min) at start and after each run: {' '.join(f'{x:.1f}' for x in result['load'])}")
        _report(result["np"], result["zk"], result["weights"], result["infos"])
        results[key] = result
    flower, zk0 = results["flower"], results["zk0"]
    zk_warm = _mean(float(r["seconds"]) for r in zk0["zk"])
    print(
        f"## zk0 on zk0-supernode {zk_warm:.1f} s/round against the engine's default floor (numpy on "
        f"flower-supernode) {_mean(r['round'] for r in flower['np']):.1f} s/round: ratio "
        f"{zk_warm / _mean(r['round'] for r in flower['np']):.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="zk0-bench-probe-") as tmp:
        from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset

        dataset = write_synthetic_dataset(
            Path(tmp) / "ds", SyntheticDatasetConfig(episodes=4, frames_per_episode=20, seed=1)
        )
        _breakdown(dataset, zk0["zk"])


def _report(np_rounds: list[dict], zk_records: list[dict], weight_bytes: int, infos: dict[str, dict]):
    np_mean = _mean(r["round"] for r in np_rounds)
    np_train = _mean(r["train"] for r in np_rounds)
    zk_mean = _mean(float(r["seconds"]) for r in zk_records)
    print(f"loopback federation: 1 TLS SuperLink (node auth, SQLite), 2 SuperNodes; numpy {ROUNDS} rounds before")
    print(f"and {ROUNDS} after zk0's {ROUNDS} rounds (the floor under the same load)")
    print("  numpy round: a train message (array + 1) and an evaluate message to each node, FedAvg")
    print("  zk0 round:   a train message to each node (score the received weights on held-out episodes,")
    print(
        f"               then {TINY_RUN['local-steps']} SmolVLA steps), validated FedProx mean, "
        "server eval on 2 datasets,"
    )
    print("               checkpoint, round JSON + wandb (offline); evaluate messages off (client-eval-every = 0)")
    print(
        f"numpy s/round (server clock): {' '.join(f'{r["round"]:.1f}' for r in np_rounds)}  mean {np_mean:.1f}"
        f"  (train phase {np_train:.1f}, evaluate phase {np_mean - np_train:.1f})"
    )
    print(
        f"zk0   s/round (server clock): {' '.join(f'{float(r["seconds"]):.1f}' for r in zk_records)}  "
        f"mean {zk_mean:.1f}"
    )
    print(
        f"ratio zk0/numpy per round: {zk_mean / np_mean:.2f}  (target <= 1.5); "
        f"zk0 round / numpy train phase alone: {zk_mean / np_train:.2f}"
    )
    steps = sorted({k for r in zk_records for k in r.get("seconds-by-step", {})})
    print(
        "zk0 server-side steps, mean s/round: "
        + ", ".join(f"{k} {_mean(r.get('seconds-by-step', {}).get(k, 0.0) for r in zk_records):.2f}" for k in steps)
    )
    for name, info in infos.items():
        print(
            f"flwr ls {name}: elapsed {info['elapsed'] / ROUNDS:.1f} s/round, "
            f"{info['network-traffic']['total-bytes'] / ROUNDS:,.0f} B/round on the wire, "
            f"ClientApp compute {info['compute-time']['clientapp-seconds'] / ROUNDS:.1f} s/round"
        )
        proxy = info.get("proxy", {})
        print(
            f"  proxy (nginx, public + admin listener): {proxy.get('requests', 0) / ROUNDS:.0f} requests/round, "
            f"its own time {proxy.get('seconds', 0.0) / ROUNDS * 1000:.0f} ms/round "
            "(request time minus the SuperLink's)"
        )
    if weight_bytes:
        wire = infos["zk0"]["network-traffic"]["total-bytes"] / ROUNDS
        print(
            f"zk0 trainable weights {weight_bytes:,} B; wire/round {wire:,.0f} B = {wire / weight_bytes:.2f} x weights "
            "(2 nodes x (train send + reply) = 4 weight transfers expected per round)"
        )


def _probe(code: str, cwd: Path, *args: str) -> dict[str, list[float]] | None:
    """Steps of a fresh process as {name: [wall s, CPU s]}, plus interpreter start and exit."""
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False, cwd=cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        print(f"breakdown probe failed: {proc.stderr[-800:]}")
        return None
    steps = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    steps["interpreter start and exit"] = [
        time.perf_counter() - started - sum(w for w, _ in steps.values()),
        cpu - sum(c for _, c in steps.values()),
    ]
    return steps


def _total(steps: dict[str, list[float]]) -> list[float]:
    return [sum(v[0] for v in steps.values()), sum(v[1] for v in steps.values())]


def _breakdown(dataset: Path, zk_records: list[dict]) -> None:
    """Where zk0's round time goes: one ClientApp message in a fresh process (Flower's default)
    and in a process forked from the warm pool (zk0-supernode), then the server's own steps."""
    cfg = REPO / "pyproject.toml"
    args = (str(cfg), json.dumps(TINY_RUN), f"local:{dataset}")
    zk = _probe(PROBE, REPO, *args)
    warm = _probe(WARM_PROBE, REPO, *args)
    npy = _probe(NUMPY_PROBE, NUMPY_APP) or {}
    if zk is None or warm is None:
        return
    warm.pop("interpreter start and exit")  # the pool's interpreter outlives the messages
    preload = warm.pop(PRELOAD_STEP)
    print(f"one ClientApp message, run alone (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"  {'step':<68} {'fresh process':>15} | {'numpy fresh':>15}")
    print(f"  {'':<68} {'wall':>7} {'CPU':>7} | {'wall':>7} {'CPU':>7}")

    def row(name: str, mine: list[float] | None, theirs: list[float] | None) -> None:
        left = f"{mine[0]:6.2f}s {mine[1]:6.2f}s" if mine else " " * 15
        right = f"{theirs[0]:6.2f}s {theirs[1]:6.2f}s" if theirs else ""
        print(f"  {name:<68} {left} | {right}")

    for name in [*zk, *(n for n in npy if n not in zk)]:
        row(name, zk.get(name), npy.get(name))
    row("total per message", _total(zk), _total(npy) if npy else None)
    print("  forked from zk0-supernode's warm pool:")
    for name, value in warm.items():
        row(name, value, None)
    row("total per message", _total(warm), None)
    print(f"  (the pool's preload, once per SuperNode start: {preload[0]:.2f} s wall, {preload[1]:.2f} s CPU)")
    server = {
        k: _mean(r.get("seconds-by-step", {}).get(k, 0.0) for r in zk_records) for k in ("server-eval", "checkpoint")
    }
    print("zk0 server work per round: " + ", ".join(f"{k} {v:.2f} s" for k, v in server.items()))
