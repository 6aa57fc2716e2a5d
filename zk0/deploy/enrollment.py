"""Invitation-only enrollment: register, list and unregister SuperNode public keys, idempotently.

These make the same Control API calls as ``flwr supernode register/list/unregister``
(flwr.cli.supernode), with flwr's own client and a named connection in
``$FLWR_HOME/config.toml``, in-process: Flower 1.42's ``flwr supernode list --format json``
does not show public keys, and the key → node lookup is what makes the calls idempotent.

Flower 1.42 keeps an unregistered key reserved ("Public key already in use"): a node whose
key was unregistered must make a new key pair to join again.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

UNREGISTERED = "unregistered"


class EnrollmentError(RuntimeError):
    """Enrollment could not be done; the message says why and what to do."""


@dataclass(frozen=True)
class Node:
    node_id: int
    status: str
    fingerprint: str
    public_key_pem: bytes
    registered_at: str
    unregistered_at: str


@dataclass(frozen=True)
class Outcome:
    node_id: int | None
    changed: bool
    message: str


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Load an OpenSSH ECDSA public key (``supernode.pub`` / ``ssh-keygen -t ecdsa -b 384``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise EnrollmentError(f"Public key file {path} does not exist.")
    try:
        key = serialization.load_ssh_public_key(path.read_bytes())
    except (ValueError, TypeError) as err:
        raise EnrollmentError(f"{path} is not an OpenSSH public key ({err}); send the node's supernode.pub.") from err
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise EnrollmentError(f"{path} is not an ECDSA key; make one with `zk0 pki node-key`.")
    return key


def _pem(key: ec.EllipticCurvePublicKey) -> bytes:
    # The encoding the SuperLink stores (flwr.supercore.primitives.asymmetric.public_key_to_bytes).
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """SHA256 fingerprint as ``ssh-keygen -l`` prints it."""
    blob = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    digest = hashlib.sha256(base64.b64decode(blob.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@contextmanager
def control_client(connection: str, quiet: bool = False) -> Iterator:
    """flwr's Control API client for a named connection (as the ``flwr`` CLI builds it).

    flwr prints "Using SuperLink: ..." while connecting: it goes to stderr (``quiet``: nowhere)
    so that stdout carries only results.
    """
    from flwr.cli.flower_config import read_superlink_connection
    from flwr.cli.utils import init_http_client_from_connection

    try:
        conn = read_superlink_connection(connection)
    except (Exception, SystemExit) as err:  # click.ClickException and friends: re-say plainly
        raise EnrollmentError(
            f"No usable SuperLink connection {connection!r} in $FLWR_HOME/config.toml ({err}). "
            "Write one with zk0.deploy.connection.write_connection or the server playbook."
        ) from err
    with open(os.devnull, "w") as devnull, redirect_stdout(devnull if quiet else sys.stderr):
        client = init_http_client_from_connection(conn)
    try:
        yield client
    finally:
        client.close()


def _call(connection: str, method: str, request: object) -> object:
    with control_client(connection) as client:
        try:
            return getattr(client, method)(request)
        except Exception as err:
            raise EnrollmentError(
                f"SuperLink {connection!r} refused {method} ({type(err).__name__}: {err}). "
                "Check that it runs and that the connection's address and CA are right."
            ) from err


def list_nodes(connection: str) -> list[Node]:
    """All nodes the SuperLink knows (unregistered ones included), with key fingerprints."""
    from flwr.proto.control_pb2 import ListNodesRequest  # pylint: disable=E0611

    response = _call(connection, "ListNodes", ListNodesRequest())
    nodes = []
    for info in response.nodes_info:  # type: ignore[attr-defined]
        pem = bytes(info.public_key)
        try:
            fp = fingerprint(serialization.load_pem_public_key(pem))  # type: ignore[arg-type]
        except ValueError:
            fp = "?"
        nodes.append(
            Node(
                node_id=int(info.node_id),
                status=info.status,
                fingerprint=fp,
                public_key_pem=pem,
                registered_at=info.registered_at,
                unregistered_at=info.unregistered_at,
            )
        )
    return nodes


def find_node(connection: str, key: ec.EllipticCurvePublicKey) -> Node | None:
    pem = _pem(key)
    for node in list_nodes(connection):
        if node.public_key_pem == pem:
            return node
    return None


def register(public_key_file: Path, connection: str) -> Outcome:
    """Register a node's public key; an already registered key is a no-op."""
    key = load_public_key(public_key_file)
    node = find_node(connection, key)
    if node is not None and node.status != UNREGISTERED:
        return Outcome(node.node_id, False, f"already registered as node {node.node_id} ({node.status})")
    if node is not None:
        raise EnrollmentError(
            f"Key {fingerprint(key)} was unregistered (node {node.node_id}, {node.unregistered_at}). "
            "Flower keeps unregistered keys reserved: the node must make a new key pair "
            "(move its supernode.key away, run `zk0 pki node-key`) and send the new public key."
        )
    from flwr.proto.control_pb2 import RegisterNodeRequest  # pylint: disable=E0611

    response = _call(connection, "RegisterNode", RegisterNodeRequest(public_key=_pem(key)))
    node_id = int(response.node_id)  # type: ignore[attr-defined]
    if not node_id:
        raise EnrollmentError("The SuperLink answered without a node id: registration failed.")
    return Outcome(node_id, True, f"registered as node {node_id}")


def unregister(node_or_key: str, connection: str) -> Outcome:
    """Unregister by public key file or node id; an unknown or unregistered node is a no-op."""
    if node_or_key.isdigit():
        nodes = {n.node_id: n for n in list_nodes(connection)}
        node = nodes.get(int(node_or_key))
    else:
        node = find_node(connection, load_public_key(Path(node_or_key)))
    if node is None:
        return Outcome(None, False, "not registered")
    if node.status == UNREGISTERED:
        return Outcome(node.node_id, False, f"node {node.node_id} already unregistered")
    from flwr.proto.control_pb2 import UnregisterNodeRequest  # pylint: disable=E0611

    _call(connection, "UnregisterNode", UnregisterNodeRequest(node_id=node.node_id))
    return Outcome(node.node_id, True, f"unregistered node {node.node_id}")
