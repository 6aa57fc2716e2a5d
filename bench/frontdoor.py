"""The edge proxy's cost: request latency through nginx against the SuperLink's own port, and
the SuperLink's memory under the largest bodies the proxy lets through.

    python -m bench frontdoor

One loopback SuperLink behind the proxy (zk0.deploy.loopback). The requests are the Fleet
calls an unauthenticated client can make (the SuperLink answers them with an error after
reading the body), so the figures are the transport's, not Flower's work.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LARGEST_BODY = 6 * 1024 * 1024 - 4096  # just under the public listener's client_max_body_size 6m
SMALL_REQUESTS = 200
LARGE_REQUESTS = 40


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _latencies(client, url: str, body: bytes, count: int) -> list[float]:
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        client.post(url, content=body, headers={"content-type": "application/protobuf"})
        seconds.append(time.perf_counter() - started)
    return seconds


def run() -> None:
    import httpx

    from zk0.deploy.loopback import Credentials, Loopback

    base = Path(tempfile.mkdtemp(prefix="zk0-bench-frontdoor-"))
    fed = Loopback(base / "fed", Credentials(base / "pki"))
    try:
        fed.start_superlink()
        superlink = fed.processes["superlink"]
        ca = str(fed.creds.server.ca_cert)
        direct = f"https://localhost:{fed.superlink_port}/v1/fleet/pull-messages"
        proxied = f"https://localhost:{fed.port}/v1/fleet/pull-messages"
        with httpx.Client(verify=ca, timeout=60) as client:
            _latencies(client, direct, b"", 20)  # warm both paths (TLS sessions, keep-alive)
            _latencies(client, proxied, b"", 20)
            rows = []
            for label, body, count in (
                ("empty body", b"", SMALL_REQUESTS),
                (f"{LARGEST_BODY >> 10} KiB body", b"\0" * LARGEST_BODY, LARGE_REQUESTS),
            ):
                d = statistics.median(_latencies(client, direct, body, count)) * 1000
                p = statistics.median(_latencies(client, proxied, body, count)) * 1000
                rows.append((label, count, d, p))
        print("| request (POST /v1/fleet/pull-messages) | n | direct ms (median) | through proxy ms | proxy adds ms |")
        print("|---|---|---|---|---|")
        for label, count, d, p in rows:
            print(f"| {label} | {count} | {d:.2f} | {p:.2f} | {p - d:.2f} |")

        before = _rss_mib(superlink.pid)
        body = b"\0" * LARGEST_BODY

        def send(_: int) -> int:
            with httpx.Client(verify=ca, timeout=120) as one:
                return one.post(proxied, content=body, headers={"content-type": "application/protobuf"}).status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(send, range(64)))
        after = _rss_mib(superlink.pid)
        print(
            f"SuperLink RSS: {before:.0f} MiB idle, {after:.0f} MiB after 64 bodies of "
            f"{LARGEST_BODY / 2**20:.2f} MiB through the proxy, 16 at a time "
            f"({time.perf_counter() - started:.1f} s; replies {sorted(set(codes))})"
        )
        over = httpx.post(proxied, content=b"\0" * (LARGEST_BODY + 8192), verify=ca, timeout=60).status_code
        print(
            f"one body 8 KiB over the limit: HTTP {over} from the proxy; "
            f"SuperLink RSS {_rss_mib(superlink.pid):.0f} MiB"
        )
    finally:
        fed.close()
