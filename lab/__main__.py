"""`python -m lab up|converge|run|down|status` (what `make demo` and `make demo-down` call)."""

from __future__ import annotations

import argparse
import sys
import time

from lab import docker as d
from lab import hosts
from lab.config import LabConfig


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="images, network, registry with the zk0 image (no hosts)")
    prepare.add_argument("--archive", action="store_true", help="also `docker save` the image for the spare host")
    sub.add_parser("up", help="images, network, registry (with the zk0 image), hosts reachable over SSH")
    converge = sub.add_parser("converge", help="ansible-playbook playbooks/site.yml -i inventory/lab")
    converge.add_argument("--playbook", default="site.yml")
    run = sub.add_parser("run", help="submit a run with flwr run, show rounds, print the summary")
    run.add_argument("--rounds", type=int, default=3)
    run.add_argument("--local-steps", type=int, default=10)
    sub.add_parser("status", help="the lab's containers and the SuperLink's nodes")
    down = sub.add_parser("down", help="remove every container, network and volume the lab made")
    down.add_argument("--keep-state", action="store_true", help="keep .lab (CA, keys, datasets, results)")
    args = parser.parse_args(argv)
    cfg = LabConfig()
    started = time.monotonic()
    try:
        if args.command == "prepare":
            hosts.prepare(cfg, archive=args.archive)
        elif args.command == "up":
            hosts.up(cfg)
        elif args.command == "converge":
            from lab import provision

            recap = provision.playbook(cfg, args.playbook)
            print(f"lab: {args.playbook} converged: {provision.summary(recap)}")
        elif args.command == "run":
            from lab import federation

            result = federation.run(cfg, rounds=args.rounds, local_steps=args.local_steps)
            print(federation.summary_table(result))
        elif args.command == "status":
            print(
                d.docker(
                    "ps", "-a", "--filter", "label=org.zk0.lab", "--format", "table {{.Names}}\t{{.Status}}"
                ).stdout
            )
        elif args.command == "down":
            removed = hosts.down(cfg, keep_state=args.keep_state)
            print(f"lab: removed {len(removed)} objects" + (": " + ", ".join(removed) if removed else ""))
    except d.LabError as err:
        print(f"lab {args.command}: {err}", file=sys.stderr)
        return 1
    print(f"lab {args.command}: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
