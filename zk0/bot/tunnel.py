"""The admin's way to the Control API when it listens on the server's loopback only.

The server's proxy binds its admin listener to 127.0.0.1 by default. When zk0bot provisioned
that server over SSH (``server start --host``), the admin commands (``server run``,
``enroll``, ``remove``, ``nodes``) forward the same port on this machine's 127.0.0.1 to it
with ``ssh -N -L`` for as long as the command runs, so the saved connection
(``127.0.0.1:<admin port>``) works from anywhere the admin can SSH from.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from zk0.bot.errors import BotError, ExitCode
from zk0.bot.playbook import Target

LOOPBACK = "127.0.0.1"


def needed(target: Target, admin_bind: str, address: str) -> bool:
    """A tunnel is needed for a remote server whose admin listener is on its loopback."""
    return not target.local and admin_bind == LOOPBACK and (not address or address.startswith(f"{LOOPBACK}:"))


def ssh_argv(target: Target, port: int) -> list[str]:
    """``ssh -N -L 127.0.0.1:PORT:127.0.0.1:PORT`` to the server, failing fast instead of prompting."""
    ssh = shutil.which("ssh")
    if ssh is None:
        raise BotError(
            "ssh is not installed", "install OpenSSH's client (apt-get install openssh-client)", ExitCode.MISSING_TOOL
        )
    argv = [
        ssh,
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=15",
        "-L",
        f"{LOOPBACK}:{port}:{LOOPBACK}:{port}",
    ]
    if target.ssh_port:
        argv += ["-p", str(target.ssh_port)]
    if target.ssh_key:
        argv += ["-i", str(target.ssh_key)]
    return [*argv, target.spec]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


@contextmanager
def admin_tunnel(target: Target, admin_bind: str, address: str, port: int, timeout: float = 30) -> Iterator[str]:
    """Yield a line saying how the admin listener is reached; the tunnel closes on exit."""
    if not needed(target, admin_bind, address):
        yield "admin listener reached directly"
        return
    if _listening(port):  # the admin's own `ssh -L`, or a tunnel another zk0bot command holds
        yield f"admin listener reached through what already listens on {LOOPBACK}:{port}"
        return
    proc = subprocess.Popen(
        ssh_argv(target, port),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                said = (proc.stderr.read() if proc.stderr and proc.poll() is not None else "").strip()
                raise BotError(
                    f"could not open an SSH tunnel to {target.spec} for the admin listener ({said or 'no answer'})",
                    f"check `ssh {target.spec}` works without a password prompt (an SSH key), or open it yourself: "
                    f"ssh -N -L {port}:{LOOPBACK}:{port} {target.spec}",
                    ExitCode.UNREACHABLE,
                )
            time.sleep(0.2)
        yield f"admin listener reached through an SSH tunnel to {target.spec}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
