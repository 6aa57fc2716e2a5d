"""The front door from the outsider's side: a machine holding only ca.pem, on the real proxy.

One SuperLink behind the edge proxy (the server stack's nginx configuration, on loopback).
Every Control API operation is tried with the unmodified ``flwr`` CLI from the public
listener, from the admin listener without the token, and from the admin listener with it;
raw HTTPS tries the routes no listener may serve and a body over the limit.
"""

from __future__ import annotations

import time

import pytest

from zk0.deploy import enrollment, frontdoor, pki
from zk0.deploy.loopback import Loopback

from .conftest import NUMPY_APP

pytestmark = pytest.mark.slow


def test_outsider_with_only_ca_pem_is_refused_and_the_admin_is_not(loopback: Loopback, tmp_path) -> None:
    loopback.start_superlink()
    ca = loopback.creds.server.ca_cert
    token = loopback.admin_token_file.read_text().strip()
    victim = loopback.register(pki.create_node_key(tmp_path / "victim"))
    spare = loopback.register(pki.create_node_key(tmp_path / "spare"))  # the admin may burn this one
    victim_run = loopback.submit(NUMPY_APP)  # never finishes by itself: no node is connected

    public = frontdoor.Target("public", loopback.address, ca)
    no_token = frontdoor.Target("admin, no token", loopback.admin_address, ca)
    admin = frontdoor.Target("admin, token", loopback.admin_address, ca, token)
    results = [
        *frontdoor.probe_control(public, tmp_path, NUMPY_APP, victim_run, victim.node_id, "refused"),
        *frontdoor.probe_routes(public, "refused"),
        *frontdoor.probe_control(no_token, tmp_path, NUMPY_APP, victim_run, victim.node_id, "refused"),
        *frontdoor.probe_routes(no_token, "refused"),
    ]
    # Nothing the outsider tried had an effect.
    assert not loopback.run_status(victim_run).startswith("finished"), loopback.run_status(victim_run)
    nodes = {n.node_id: n for n in loopback.nodes()}
    assert nodes[victim.node_id].status != enrollment.UNREGISTERED
    assert len(nodes) == 2, "an outsider's key was registered"

    results += frontdoor.probe_control(admin, tmp_path, NUMPY_APP, victim_run, spare.node_id, "allowed")
    results += frontdoor.probe_routes(admin, "refused")
    print("\n" + frontdoor.table(results))
    assert all(r.ok for r in results), frontdoor.table([r for r in results if not r.ok])
    assert loopback.run_status(victim_run).startswith("finished:stopped")
    assert {n.node_id: n.status for n in loopback.nodes()}[spare.node_id] == enrollment.UNREGISTERED


def test_oversized_body_never_reaches_the_superlink(loopback: Loopback) -> None:
    """A body within the limit passes to the SuperLink (its log shows it); one over it gets 413 and does not."""
    loopback.start_superlink()
    target = frontdoor.Target("public", loopback.address, loopback.creds.server.ca_cert)
    superlink = loopback.processes["superlink"]

    def new_lines(action) -> str:
        before = len(superlink.output())
        result = action()
        time.sleep(1)
        return f"{result} {superlink.output()[before:]}"

    # 5 MiB (Flower's largest chunk): buffered to the proxy's scratch dir, then answered by Flower.
    allowed = new_lines(lambda: frontdoor.https(target, "POST", "/v1/fleet/push-object", body=b"\0" * (5 << 20)))
    assert "push-object" in allowed and allowed.split()[0] not in ("413", "500"), allowed[:200]
    big = new_lines(
        lambda: frontdoor.https(target, "POST", "/v1/fleet/push-object", body=b"\0" * frontdoor.OVERSIZED_BODY)
    )
    assert big.startswith("413") and "push-object" not in big
