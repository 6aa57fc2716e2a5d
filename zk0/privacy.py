"""Anonymous dataset labels: stable per dataset, meaningless off the node.

A node reports `HMAC-SHA256(node_secret, dataset_uri)` truncated, never the URI, a path, a
repo id or its hostname. The secret is made on the node on first use (0600) and never
sent, so the server cannot test guesses of public repo ids against a label.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

LABEL_PREFIX = "ds-"


def load_or_create_secret(path: Path) -> bytes:
    """The node's label secret at `path`, created (0600, atomically) if absent."""
    path = Path(path)
    if path.exists():
        secret = path.read_bytes()
        if len(secret) < 32:
            raise ValueError(f"label secret {path} is shorter than 32 bytes; delete it to make a new one")
        return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    try:
        os.link(tmp, path)  # fails if another process won the race: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


def anonymous_dataset_label(dataset_uri: str, secret: bytes) -> str:
    digest = hmac.new(secret, dataset_uri.strip().encode(), hashlib.sha256).hexdigest()
    return LABEL_PREFIX + digest[:16]


EVAL_LABEL_PREFIX = "eval-"


def server_eval_label(dataset_uri: str) -> str:
    """The label of one of the server's evaluation datasets, in charts and metrics alike: stable,
    short, and neither its path nor its repo id. Unkeyed, so the admin can compute it
    (`zk0 monitor eval-label URI`); it hides local paths, but a guess of a public repo id can be
    checked against it (the admin chose these datasets; nodes' labels are keyed, above)."""
    return EVAL_LABEL_PREFIX + hashlib.sha256(dataset_uri.strip().encode()).hexdigest()[:12]
