"""The server's front door seen from outside: what an outsider holding ``ca.pem`` can do.

Each :class:`Probe` is one request an outsider (or the admin) would make, through the real
interface: the unmodified ``flwr`` CLI for the Control API, plain HTTPS for the rest. The
same probes run against the loopback federation, the Compose stack and the lab, and the
results print as the table the security docs quote (request, expected, got).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from zk0.deploy import admin_auth, connection, launch, pki

# Flower 1.42 reads at most 5 MiB per object chunk: one byte over a MiB of that is refused.
OVERSIZED_BODY = 7 * 1024 * 1024


@dataclass(frozen=True)
class Result:
    listener: str  # public, admin (no token), admin (token)
    request: str
    expected: str  # "refused" or "allowed"
    got: str  # what came back, in a few words
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.got.startswith(self.expected)


@dataclass
class Target:
    """Where to knock: a listener address, the CA, optionally the admin token."""

    label: str
    address: str
    ca_cert: Path
    token: str | None = None

    def home(self, base: Path) -> Path:
        """A private FLWR_HOME with one connection (``target``) and, with a token, the login."""
        home = Path(tempfile.mkdtemp(prefix=f"flwr-{self.label.replace(' ', '-')}-", dir=base))
        connection.write_connection("target", self.address, self.ca_cert, home=home)
        if self.token:
            admin_auth.login("target", self.token, home=home)
        return home


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def flwr(home: Path, *args: str, timeout: float = 120) -> tuple[bool, str]:
    """Run the real ``flwr`` CLI; (succeeded, what it said in one line)."""
    proc = subprocess.run(
        [launch.flower_bin("flwr"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=launch.flower_env(home),
    )
    out = _ANSI.sub("", proc.stdout + proc.stderr)
    ok = proc.returncode == 0 and '"success": false' not in out
    said = re.search(r'"error-message": "([^"]*)"', out)
    if ok and out.lstrip().startswith("{"):
        said_text = "success"
    elif said is not None:
        said_text = [part for part in said.group(1).split("\\n") if part.strip()][-1]
    else:
        lines = [line.strip(" │╭╮╰╯─") for line in out.splitlines()]
        said_text = next((line for line in lines if line and not line.startswith("Using SuperLink")), "")
    return ok, (said_text or f"exit {proc.returncode}")[:100]


def https(target: Target, method: str, path: str, body: bytes = b"", token: str | None = None) -> int:
    """Status code of one raw HTTPS request (no redirects, no retries)."""
    import httpx

    headers = {"content-type": "application/protobuf"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    url = f"https://{target.address}{path}"
    with httpx.Client(verify=str(target.ca_cert), timeout=60) as client:
        try:
            return client.request(method, url, content=body, headers=headers).status_code
        except httpx.HTTPError as err:  # a proxy may reset an oversized upload before reading it
            return 413 if body and "reset" in str(err).lower() else 0


def _cli(ok: bool, said: str) -> str:
    return f"allowed ({said})" if ok else f"refused ({said})"


def _http(code: int, allowed: set[int]) -> str:
    return f"allowed (HTTP {code})" if code in allowed else f"refused (HTTP {code})"


def probe_control(
    target: Target, base: Path, app: Path, victim_run: int, victim_node: int, expected: str
) -> list[Result]:
    """Every Control API operation the issue names, with the real flwr CLI."""
    home = target.home(base)
    key = pki.create_node_key(Path(tempfile.mkdtemp(prefix="outsider-key-", dir=base)))
    steps: list[tuple[str, Callable[[], str]]] = [
        ("flwr ls (list runs)", lambda: _cli(*flwr(home, "ls", "target", "--format", "json"))),
        ("flwr supernode list", lambda: _cli(*flwr(home, "supernode", "list", "target", "--format", "json"))),
        (
            "flwr supernode register (own key)",
            lambda: _cli(*flwr(home, "supernode", "register", str(key.public_key), "target", "--format", "json")),
        ),
        (
            f"flwr supernode unregister {victim_node}",
            lambda: _cli(*flwr(home, "supernode", "unregister", str(victim_node), "target", "--format", "json")),
        ),
        ("flwr run (own app)", lambda: _cli(*flwr(home, "run", str(app), "target", "--format", "json"))),
        (f"flwr stop {victim_run}", lambda: _cli(*flwr(home, "stop", str(victim_run), "target", "--format", "json"))),
        (
            f"flwr log {victim_run} --stream",
            lambda: _cli(*flwr(home, "log", str(victim_run), "target", "--stream", timeout=90)),
        ),
    ]

    def timed(step: Callable[[], str]) -> tuple[str, float]:
        started = time.perf_counter()
        return step(), time.perf_counter() - started

    if expected == "refused":  # independent of each other: knock on every door at once
        with ThreadPoolExecutor(max_workers=4) as pool:
            outcomes = list(pool.map(timed, [step for _, step in steps]))
    else:  # the admin's operations build on each other (run, then stop, then read its log)
        outcomes = [timed(step) for _, step in steps]
    return [
        Result(target.label, name, expected, got, secs) for (name, _), (got, secs) in zip(steps, outcomes, strict=True)
    ]


def probe_routes(target: Target, expected_fleet: str) -> list[Result]:
    """Routes that no listener may serve, and the body limit, with raw HTTPS."""
    token = target.token
    results = [
        Result(
            target.label,
            "POST /v1/runtime/acquire-task",
            "refused",
            _http(https(target, "POST", "/v1/runtime/acquire-task", token=token), {200, 400, 401, 422}),
        ),
        Result(target.label, "GET /docs", "refused", _http(https(target, "GET", "/docs", token=token), {200})),
        Result(
            target.label,
            "GET /openapi.json",
            "refused",
            _http(https(target, "GET", "/openapi.json", token=token), {200}),
        ),
        Result(
            target.label,
            "POST /v1/fleet/../control/list-runs",
            "refused",
            _http(https(target, "POST", "/v1/fleet/%2e%2e/control/list-runs", token=token), {200}),
        ),
    ]
    code = https(target, "POST", "/v1/fleet/push-object", body=b"\0" * OVERSIZED_BODY, token=token)
    results.append(
        Result(
            target.label,
            f"POST /v1/fleet/push-object, {OVERSIZED_BODY >> 20} MiB body",
            expected_fleet,
            f"refused (HTTP {code})" if code in (404, 413) else f"allowed (HTTP {code})",
        )
    )
    return results


def table(results: list[Result]) -> str:
    rows = ["| listener | request | expected | got | s |", "|---|---|---|---|---|"]
    rows += [
        f"| {r.listener} | {r.request} | {r.expected} | {r.got}{'' if r.ok else ' **MISMATCH**'} | {r.seconds:.1f} |"
        for r in results
    ]
    return "\n".join(rows)
