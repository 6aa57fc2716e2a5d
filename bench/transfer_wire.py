"""Bytes on the wire per transfer mode, as Flower counts them: `flwr ls` (network-traffic) for a
real loopback federation (TLS SuperLink behind the edge proxy, two zk0-supernodes, the tiny
SmolVLA), one run per mode on the same federation, beside the round JSON's own figure for the
weights sent to each node. The full-size figures are `python -m bench transfer`'s (computed from
the records: the full-size model does not train on 2 CPU cores in a benchmark's time)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from bench.deployment import REPO, TINY_RUN, _federation
from zk0.federation import protocol as wire

ROUNDS = 2  # int8-delta's second round carries the first round's residual
NODES = 2


def _round_figures(run_dir: Path) -> list[dict]:
    return [json.loads((run_dir / "metrics" / f"round_{r}.json").read_text()) for r in range(1, ROUNDS + 1)]


def run() -> None:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    rows = []
    with tempfile.TemporaryDirectory(prefix="zk0-bench-wire-") as tmp:
        base = Path(tmp)
        fed = _federation(base, warm=True)
        try:
            for mode in wire.TRANSFERS:
                out = base / "out"
                config = {**TINY_RUN, "num-server-rounds": ROUNDS, "output-dir": str(out), "run-name": mode}
                info = fed.wait_finished(fed.submit(REPO, {**config, "transfer": mode}), timeout=900)
                if info["status"] != "finished:completed":
                    print(f"{mode}: the run did not complete ({info['status']})")
                    return
                rounds = _round_figures(out / mode)
                assert all(r["transfer"] == mode for r in rounds)
                rows.append((mode, info["network-traffic"], rounds[-1]["bytes-per-client"]))
        finally:
            fed.close()
    fp32 = rows[0][1]["total-bytes"]
    print(f"tiny SmolVLA, {NODES} nodes, {ROUNDS} rounds per run, loopback behind the edge proxy ('flwr ls'):")
    print(
        f"{'mode':<11} {'inbound B':>12} {'outbound B':>12} {'total B':>12} {'per node-round':>15} {'vs fp32':>8} "
        f"{'weights sent/node (round JSON)':>31}"
    )
    for mode, traffic, sent in rows:
        total = traffic["total-bytes"]
        print(
            f"{mode:<11} {traffic['inbound-bytes']:>12,} {traffic['outbound-bytes']:>12,} {total:>12,} "
            f"{total / (NODES * ROUNDS):>15,.0f} {total / fp32:>8.2f} {sent:>31,}"
        )
    print("inbound and outbound as the SuperLink counts them for the run (Flower's network-traffic).")
