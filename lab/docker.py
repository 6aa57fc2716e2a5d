"""Thin, typed calls to the controller's Docker CLI (the lab's only way to touch Docker)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path


class LabError(RuntimeError):
    """A lab step failed; the message says what and how to fix it."""


def docker_bin() -> str:
    # /usr/bin/docker (Debian's docker.io) has BuildKit built in; another client first on
    # PATH may lack buildx. Either works for everything below.
    for candidate in (os.environ.get("DOCKER"), "/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).exists():
            return candidate
    raise LabError("docker not found: run scripts/ensure-docker.sh (make demo does) or install Docker.")


def docker(
    *args: str, check: bool = True, timeout: float = 600, input: str | None = None, capture: bool = True
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [docker_bin(), *args], capture_output=capture, text=True, timeout=timeout, input=input, check=False
    )
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip()[-1500:] if capture else ""
        raise LabError(f"docker {' '.join(args[:3])} … failed (exit {result.returncode}): {detail}")
    return result


def exists(kind: str, name: str) -> bool:
    return docker(kind, "inspect", name, check=False).returncode == 0


def running(container: str) -> bool:
    out = docker("inspect", "-f", "{{.State.Running}}", container, check=False)
    return out.returncode == 0 and out.stdout.strip() == "true"


def build_cached(image: str, dockerfile: Path, context: Path, build_args: dict[str, str], also_hash: str = "") -> bool:
    """Build `image` unless a build of the same inputs exists (tag suffixed with their hash).

    Returns True when it built. The hash covers the Dockerfile, every file in the context and
    the build args (plus `also_hash`, e.g. a base image id), so changing any of them
    rebuilds and nothing else does.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in context.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for key, value in sorted(build_args.items()):
        digest.update(f"{key}={value}".encode())
    digest.update(also_hash.encode())
    repo, _, tag = image.partition(":")
    hashed = f"{repo}:{tag or 'latest'}-{digest.hexdigest()[:12]}"
    if exists("image", hashed):
        docker("tag", hashed, image)
        return False
    argv = ["build", "-q", "-f", str(dockerfile), "-t", hashed, "-t", image, "--label", "org.zk0.lab=1"]
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    docker(*argv, str(context), timeout=1200)
    return True
