"""Run every benchmark section: `python -m bench [section ...]`."""

from __future__ import annotations

import importlib
import sys

SECTIONS = {
    "training": "bench.training",
    "loader": "bench.loader",
    "deployment": "bench.deployment",
    "frontdoor": "bench.frontdoor",
    "transfer": "bench.transfer",
    "transfer-wire": "bench.transfer_wire",
    "lr-schedule": "bench.lr_schedule",
}


def main(argv: list[str]) -> int:
    chosen = argv or list(SECTIONS)
    for name in chosen:
        if name not in SECTIONS:
            print(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
            return 2
        try:
            module = importlib.import_module(SECTIONS[name])
        except ModuleNotFoundError as err:
            print(f"# {name}: not available ({err})")
            continue
        print(f"# {name}")
        module.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
