#!/usr/bin/python3
"""Stand-in `tailscale` CLI for the role test: no control server is reachable here.

Records every call (argv) in /var/lib/tailscale-stub/calls.jsonl, keeps a fake node state
in state.json, and answers `status --json` from it. `up` needs --auth-key=file:PATH (or no
key when logged in before), reads the key from that file and stores only its length.
"""

import json
import os
import sys
from pathlib import Path

STATE_DIR = Path("/var/lib/tailscale-stub")
STATE = STATE_DIR / "state.json"
CALLS = STATE_DIR / "calls.jsonl"


def load():
    try:
        return json.loads(STATE.read_text())
    except FileNotFoundError:
        return {"BackendState": "NeedsLogin", "Self": None}


def save(state):
    STATE.write_text(json.dumps(state))


def main(argv):
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with CALLS.open("a") as f:
        f.write(json.dumps(argv) + "\n")
    state = load()
    if argv[:2] == ["status", "--json"]:
        print(json.dumps(state, indent=2))
        return 0
    if argv[:1] == ["up"]:
        flags = dict(a[2:].split("=", 1) if "=" in a else (a[2:], "") for a in argv[1:])
        key = flags.get("auth-key") or flags.get("authkey")
        if key is not None:
            if not key.startswith("file:"):
                print("stub: auth key given on the command line", file=sys.stderr)
                return 2
            key_file = Path(key[5:])
            secret = key_file.read_text().strip()
            state["KeyFile"] = key[5:]
            state["KeyFileMode"] = oct(key_file.stat().st_mode & 0o777)
            state["KeyLength"] = len(secret)
        elif state["BackendState"] not in ("Running", "Stopped"):
            print("stub: not logged in and no auth key", file=sys.stderr)
            return 1
        state["BackendState"] = "Running"
        state["Self"] = {
            "HostName": flags.get("hostname") or os.uname().nodename,
            "Tags": sorted(t for t in flags.get("advertise-tags", "").split(",") if t) or None,
        }
        save(state)
        print("Success.")
        return 0
    print("stub: unsupported call", argv, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
