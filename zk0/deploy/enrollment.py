"""Invitation-only enrollment: register, list and unregister SuperNode public keys, idempotently.

These make the same Control API calls as ``flwr supernode register/list/unregister``
(flwr.cli.supernode), with flwr's own client and a named connection in
``$FLWR_HOME/config.toml``, in-process: Flower 1.42's ``flwr supernode list --format json``
does not show public keys, and the key → node lookup is what makes the calls idempotent.

Flower 1.42 keeps an unregistered key reserved ("Public key already in use"): a node whose
key was unregistered must make a new key pair to join again. :func:`register` raises
:class:`KeyBurnedError` for such a key, with :func:`burned_key_message` saying what to do.
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
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from zk0.deploy import admin_auth

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

UNREGISTERED = "unregistered"


class EnrollmentError(RuntimeError):
    """Enrollment could not be done; the message says why and what to do."""


class KeyBurnedError(EnrollmentError):
    """The key was unregistered on this SuperLink: Flower never registers it again."""

    def __init__(self, message: str, fingerprint: str, node_id: int | None) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint
        self.node_id = node_id


# What Flower 1.42 answers when a RegisterNode key is reserved (flwr.common.constant).
ALREADY_IN_USE = "Public key already in use"

# The node operator's way to a new key pair: the supernode role (`zk0bot keys create`, client.yml)
# keeps an existing supernode.key (openssh_keypair regenerate: never), so the old pair goes first.
NEW_KEY_FIX = (
    "the node operator must make a new key pair (on the node: delete supernode.key and supernode.key.pub "
    "in the key directory, /etc/zk0/client/pki by default (supernode_pki_dir), then run `zk0bot keys create` "
    "or rerun playbooks/client.yml; without zk0bot: move supernode.key away and run `zk0 pki node-key`) "
    "and send the new public key (`zk0bot keys show`)"
)


def burned_key_message(
    name: str, fingerprint: str, node_id: int | None = None, unregistered_at: str = "", admin_fix: str = ""
) -> str:
    """The finding for a key that was unregistered: what happened, who must do what."""
    details = [
        fingerprint,
        f"node {node_id}" if node_id else "",
        f"unregistered {unregistered_at}" if unregistered_at else "",
    ]
    text = (
        f"key of {name or 'this node'} ({', '.join(d for d in details if d)}) was unregistered on this SuperLink "
        f"and can never be registered again; {NEW_KEY_FIX}"
    )
    return f"{text}; {admin_fix}" if admin_fix else text


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
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:  # a PEM key: "Unsupported key type"
        raise EnrollmentError(f"{path} is not an OpenSSH public key ({err}); send the node's supernode.pub.") from err
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise EnrollmentError(f"{path} is not an ECDSA key; make one with `zk0 pki node-key`.")
    return key


def _pem(key: ec.EllipticCurvePublicKey) -> bytes:
    # The encoding the SuperLink stores (flwr.supercore.primitives.asymmetric.public_key_to_bytes).
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: PublicKeyTypes) -> str:
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
    with Path(os.devnull).open("w") as devnull, redirect_stdout(devnull if quiet else sys.stderr):
        # The admin token (zk0 admin login) from the credential store of the FLWR_HOME in effect.
        client = init_http_client_from_connection(conn, admin_auth.auth_plugin(str(conn.address)))
    try:
        yield client
    finally:
        client.close()


def _refusal(err: Exception) -> str:
    """flwr's HTTP client raises httpx.HTTPStatusError, whose text lacks the SuperLink's reason:
    add the response's ``detail`` (e.g. "Public key already in use.")."""
    response = getattr(err, "response", None)
    try:
        detail = response.json().get("detail", "") if response is not None else ""
    except Exception:  # noqa: BLE001  # not JSON: the text is still better than nothing
        detail = response.text[:200] if response is not None else ""
    return f"{type(err).__name__}: {err}" + (f"; SuperLink says: {detail}" if detail else "")


def _call(connection: str, method: str, request: object) -> Any:  # the method's reply message
    with control_client(connection) as client:
        try:
            return getattr(client, method)(request)
        except Exception as err:
            raise EnrollmentError(
                f"SuperLink {connection!r} refused {method} ({_refusal(err)}). "
                "Check that it runs and that the connection's address and CA are right."
            ) from err


def list_nodes(connection: str) -> list[Node]:
    """All nodes the SuperLink knows (unregistered ones included), with key fingerprints."""
    from flwr.proto.control_pb2 import ListNodesRequest

    response = _call(connection, "ListNodes", ListNodesRequest())
    nodes = []
    for info in response.nodes_info:
        pem = bytes(info.public_key)
        try:
            fp = fingerprint(serialization.load_pem_public_key(pem))
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


def register(public_key_file: Path, connection: str, name: str = "") -> Outcome:
    """Register a node's public key; an already registered key is a no-op.

    A key that was unregistered raises :class:`KeyBurnedError` (``name`` is used in its message).
    """
    key = load_public_key(public_key_file)
    node = find_node(connection, key)
    if node is not None and node.status != UNREGISTERED:
        return Outcome(node.node_id, False, f"already registered as node {node.node_id} ({node.status})")
    if node is not None:
        raise KeyBurnedError(
            burned_key_message(name or str(public_key_file), node.fingerprint, node.node_id, node.unregistered_at),
            node.fingerprint,
            node.node_id,
        )
    from flwr.proto.control_pb2 import RegisterNodeRequest

    try:
        response = _call(connection, "RegisterNode", RegisterNodeRequest(public_key=_pem(key)))
    except EnrollmentError as err:  # reserved but not in our list (another account, a race): same finding
        if ALREADY_IN_USE.lower() not in str(err).lower():
            raise
        fp = fingerprint(key)
        raise KeyBurnedError(burned_key_message(name or str(public_key_file), fp), fp, None) from err
    node_id = int(response.node_id)
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
    from flwr.proto.control_pb2 import UnregisterNodeRequest

    _call(connection, "UnregisterNode", UnregisterNodeRequest(node_id=node.node_id))
    return Outcome(node.node_id, True, f"unregistered node {node.node_id}")
