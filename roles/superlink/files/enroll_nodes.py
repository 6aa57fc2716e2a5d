"""Make the SuperLink's registered SuperNode keys match a list, idempotently.

Runs inside the SuperLink container (the zk0 image has zk0.deploy and flwr) with
`python -c`; reads {"nodes": [{"name", "public_key"}], "unregister_unlisted", "address",
"ca"} as JSON on stdin and prints one JSON line: changed, registered, unregistered, nodes,
burned and failed. Talks to the SuperLink's Control API over TLS on 127.0.0.1 (the
certificate covers it).

A key that was unregistered stays reserved in Flower 1.42 and can never be registered again:
it is a finding in "burned" (with the fix), not a crash, and the other nodes are still
registered; "failed" holds any other per-node refusal. The role fails on either afterwards.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

# What the admin does once the node operator sent the new public key.
ADMIN_FIX = (
    "then replace the public key of {name} in superlink_authorized_nodes (zk0bot: `zk0bot server remove {name}`, "
    "then `zk0bot server enroll NEW.pub --name {name}`) and run the server play again"
)


def main() -> int:
    request = json.load(sys.stdin)
    home = Path(tempfile.mkdtemp(prefix="zk0-enroll-"))
    os.environ["FLWR_HOME"] = str(home)
    from cryptography.hazmat.primitives import serialization

    from zk0.deploy import connection, enrollment

    connection.write_connection("zk0-local", request["address"], Path(request["ca"]), home=home)
    deadline = time.monotonic() + float(request.get("timeout", 120))
    while True:  # the Control API may answer a little after the health service
        try:
            nodes = enrollment.list_nodes("zk0-local")
            break
        except enrollment.EnrollmentError:
            if time.monotonic() > deadline:
                raise
            time.sleep(3)

    wanted = {}
    for index, item in enumerate(request["nodes"]):
        path = home / f"node-{index}.pub"
        path.write_text(item["public_key"].strip() + "\n", encoding="utf-8")
        key = enrollment.load_public_key(path)
        pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        wanted[pem] = (item["name"], path)

    registered, unregistered, burned, failed = [], [], [], []
    known = {n.public_key_pem: n for n in nodes}
    for pem, (name, path) in wanted.items():
        node = known.get(pem)
        if node is not None and node.status != enrollment.UNREGISTERED:
            continue
        try:
            outcome = enrollment.register(path, "zk0-local", name=name)
        except enrollment.KeyBurnedError as err:  # unregistered once: reserved for good
            burned.append(
                {
                    "name": name,
                    "fingerprint": err.fingerprint,
                    "node_id": str(err.node_id or ""),
                    "message": f"{err}; {ADMIN_FIX.format(name=name)}",
                }
            )
            continue
        except enrollment.EnrollmentError as err:  # one node's refusal must not stop the others
            failed.append({"name": name, "message": f"{name}: {err}"})
            continue
        registered.append({"name": name, "node_id": str(outcome.node_id)})
    if request.get("unregister_unlisted", True):
        for node in nodes:
            if node.public_key_pem not in wanted and node.status != enrollment.UNREGISTERED:
                enrollment.unregister(str(node.node_id), "zk0-local")
                unregistered.append({"node_id": str(node.node_id), "fingerprint": node.fingerprint})

    names = {pem: name for pem, (name, _) in wanted.items()}
    final = [
        {
            "node_id": str(n.node_id),
            "status": n.status,
            "fingerprint": n.fingerprint,
            "name": names.get(n.public_key_pem, ""),
        }
        for n in enrollment.list_nodes("zk0-local")
    ]
    print(
        json.dumps(
            {
                "changed": bool(registered or unregistered),
                "registered": registered,
                "unregistered": unregistered,
                "nodes": final,
                "burned": burned,
                "failed": failed,
            }
        )
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # noqa: BLE001  # one readable line for Ansible
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
