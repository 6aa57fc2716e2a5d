"""`zk0bot doctor`: is this machine ready to run a zk0 node, and can it reach the SuperLink?

Each check returns ok / warn / fail with one line of detail and, unless ok, the fix.
Required checks fail the command (non-zero exit: :data:`ExitCode.FAILED`, or
:data:`ExitCode.UNREACHABLE` when only the SuperLink check failed); warnings do not. The
SuperLink check opens TCP, then TLS verifying the certificate against the given CA and the
host name (the SAN match flower-supernode does), and reports days until the certificate
expires. Checks can be chosen with ``--check NAME`` (repeatable).
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zk0 import validate
from zk0.bot import keys, playbook
from zk0.bot.errors import BotError, ExitCode

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_FREE_GB = 10  # the zk0 image is about 6.5 GB, plus the HF cache and checkpoints
WARN_FREE_GB = 25
EXPIRY_WARN_DAYS = 30


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def _run(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def check_docker() -> Check:
    if not shutil.which("docker"):
        return Check(
            "docker", FAIL, "docker is not installed", "run `zk0bot client start` (the docker role installs it)"
        )
    proc = _run(["docker", "info", "--format", "{{json .ServerVersion}}"])
    if proc is None or proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["no answer"])[-1] if proc else "timed out"
        return Check(
            "docker",
            FAIL,
            f"the Docker engine does not answer ({err})",
            "start it (`sudo systemctl start docker`) or run zk0bot with sudo",
        )
    version = proc.stdout.strip().strip('"') or "?"
    return Check("docker", OK, f"engine {version}")


def check_compose() -> Check:
    proc = _run(["docker", "compose", "version", "--short"]) if shutil.which("docker") else None
    if proc is None or proc.returncode != 0:
        return Check(
            "compose",
            FAIL,
            "Docker Compose v2 (`docker compose`) is missing",
            "install the docker-compose-plugin (the docker role does)",
        )
    return Check("compose", OK, f"docker compose {proc.stdout.strip()}")


def check_gpu() -> Check:
    if not shutil.which("nvidia-smi"):
        return Check(
            "gpu",
            WARN,
            "no NVIDIA driver (nvidia-smi not found): training would run on the CPU, very slowly",
            "on a GPU host `zk0bot client start` installs the driver (nvidia role), then reboot",
        )
    proc = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    if proc is None or proc.returncode != 0 or not proc.stdout.strip():
        return Check(
            "gpu", WARN, "nvidia-smi finds no working GPU", "reboot after a driver install; check `nvidia-smi`"
        )
    return Check("gpu", OK, "; ".join(line.strip() for line in proc.stdout.strip().splitlines()))


def check_toolkit() -> Check:
    if not shutil.which("nvidia-smi"):
        return Check("toolkit", OK, "not needed without an NVIDIA GPU")
    proc = _run(["docker", "info", "--format", "{{json .Runtimes}}"]) if shutil.which("docker") else None
    if proc is None or "nvidia" not in proc.stdout:
        return Check(
            "toolkit",
            WARN,
            "Docker has no nvidia runtime: containers cannot use the GPU",
            "install the NVIDIA Container Toolkit (`zk0bot client start` runs the nvidia role)",
        )
    return Check("toolkit", OK, "Docker has the nvidia runtime")


def check_disk(path: Path = Path("/var/lib/docker")) -> Check:
    probe = path if path.exists() else Path("/")
    free_gb = shutil.disk_usage(probe).free / 1e9
    detail = f"{free_gb:.0f} GB free on {probe}"
    if free_gb < MIN_FREE_GB:
        return Check("disk", FAIL, detail, f"free at least {MIN_FREE_GB} GB (the image alone is 6.5 GB)")
    if free_gb < WARN_FREE_GB:
        return Check("disk", WARN, detail, f"{WARN_FREE_GB} GB leaves room for the HF cache and image upgrades")
    return Check("disk", OK, detail)


def check_ansible() -> Check:
    try:
        path = playbook.ansible_playbook()
        assets = playbook.assets_dir()
    except BotError as err:
        return Check("ansible", FAIL, err.problem, err.fix)
    return Check("ansible", OK, f"{path}; playbooks in {assets}")


def check_key(pki_dir: Path) -> Check:
    try:
        key = keys.show(pki_dir)
    except BotError as err:
        return Check("key", WARN, err.problem, err.fix)
    return Check("key", OK, f"{key.path} {key.fingerprint}")


def _split_address(address: str) -> tuple[str, int]:
    try:
        return validate.parse_hostport(address, "--superlink")
    except ValueError as err:
        raise BotError(str(err), "pass e.g. --superlink link.example.org:8000", ExitCode.USAGE) from None


def check_superlink(address: str, ca: Path, timeout: float = 5.0) -> Check:
    """TCP, then TLS with the CA and host-name verification; certificate expiry."""
    host, port = _split_address(address)
    if not Path(ca).is_file():
        return Check("superlink", FAIL, f"CA certificate {ca} does not exist", "save the admin's ca.pem and pass --ca")
    try:
        context = ssl.create_default_context(cafile=str(ca))
    except ssl.SSLError as err:
        return Check(
            "superlink", FAIL, f"{ca} is not a usable CA certificate ({err.reason})", "pass the federation's ca.pem"
        )
    context.set_alpn_protocols(["http/1.1"])  # what SuperNodes speak to the proxy (Flower 1.42: HTTP/1.1 only)
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except (TimeoutError, ConnectionRefusedError, OSError) as err:
        what = "refused" if isinstance(err, ConnectionRefusedError) else type(err).__name__
        return Check(
            "superlink",
            FAIL,
            f"cannot open TCP to {host}:{port} ({what}: {err})",
            "check the address and port, that the SuperLink runs (`zk0bot server status`), and any firewall",
        )
    try:
        with raw, context.wrap_socket(raw, server_hostname=host) as tls:
            cert = tls.getpeercert()
            version = tls.version()
    except ssl.SSLCertVerificationError as err:
        if "match" in (err.verify_message or "") or "hostname" in str(err).lower():
            return Check(
                "superlink",
                FAIL,
                f"the SuperLink's certificate does not name {host!r} ({err.verify_message})",
                "use a name or IP from its certificate, or ask the admin to add it to superlink_cert_sans",
            )
        return Check(
            "superlink",
            FAIL,
            f"the SuperLink's certificate is not signed by {ca} ({err.verify_message})",
            "get the federation's current ca.pem from the admin",
        )
    except (ssl.SSLError, OSError) as err:
        return Check(
            "superlink",
            FAIL,
            f"TLS handshake with {host}:{port} failed ({err})",
            "check that the address is the SuperLink's TLS port",
        )
    not_after = cert.get("notAfter") if cert else None  # verified above, so it is there
    if not isinstance(not_after, str):
        return Check(
            "superlink", FAIL, f"{host}:{port} sent no certificate", "check that it is the SuperLink's TLS port"
        )
    expires = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), dt.UTC)
    days = (expires - dt.datetime.now(dt.UTC)).days
    detail = (
        f"{host}:{port} {version}, certificate verified by {Path(ca).name}, expires {expires:%Y-%m-%d} ({days} days)"
    )
    if days < EXPIRY_WARN_DAYS:
        return Check("superlink", WARN, detail, "ask the admin to re-issue the certificate (`zk0bot server start`)")
    return Check("superlink", OK, detail)


CHECKS = ("docker", "compose", "gpu", "toolkit", "disk", "ansible", "key", "superlink")
REQUIRED = {"docker", "compose", "disk", "ansible", "superlink"}


def run_checks(names: list[str], superlink: str | None, ca: Path | None, pki_dir: Path) -> list[Check]:
    unknown = set(names) - set(CHECKS)
    if unknown:
        raise BotError(
            f"Unknown check {', '.join(sorted(unknown))}", f"choose from {', '.join(CHECKS)}", ExitCode.USAGE
        )
    selected = list(names) or [c for c in CHECKS if c != "superlink" or superlink]
    if "superlink" in selected and not (superlink and ca):
        raise BotError("The superlink check needs --superlink HOST:PORT and --ca FILE", "pass both", ExitCode.USAGE)
    if "superlink" in selected:
        _split_address(superlink or "")  # a bad address is a usage error before any check runs
    table: dict[str, Callable[[], Check]] = {
        "docker": check_docker,
        "compose": check_compose,
        "gpu": check_gpu,
        "toolkit": check_toolkit,
        "disk": check_disk,
        "ansible": check_ansible,
        "key": lambda: check_key(pki_dir),
        "superlink": lambda: check_superlink(superlink or "", Path(ca or "")),
    }
    return [table[name]() for name in selected]


def exit_code(results: list[Check]) -> ExitCode:
    failed = {c.name for c in results if c.status == FAIL and c.name in REQUIRED}
    if not failed:
        return ExitCode.OK
    return ExitCode.UNREACHABLE if failed == {"superlink"} else ExitCode.FAILED
