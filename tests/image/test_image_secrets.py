"""The build CA (BuildKit secret "extra_ca") must not end up in any layer or in metadata.

scripts/build-image.sh hands the host's CA bundle to the build. Public roots may legitimately
appear in the image (Debian's bundle, certifi, uv's built-in roots), so the certificates
searched for are the host's local CAs: those Debian's update-ca-certificates adds from
/usr/local/share/ca-certificates (a TLS-intercepting proxy's CA lives there), or every
certificate of $ZK0_BUILD_CA when it names another file. They are searched for, as PEM text
and as raw DER, in every file of every layer of `docker save`, in the image config and in
`docker history`; file names of the secret mount and the temporary bundle are searched too.
"""

import base64
import os
import re
import subprocess
import tarfile
from pathlib import Path
from typing import IO

import pytest
from image_helpers import DOCKER, docker

PEM = re.compile(r"-----BEGIN CERTIFICATE-----\s+(.*?)\s*-----END CERTIFICATE-----", re.DOTALL)
SUSPICIOUS_NAMES = ("extra_ca", "build-ca/bundle.pem", "run/secrets/")
CHUNK = 8 << 20


def certificates(text: str) -> set[str]:
    return {re.sub(r"\s+", "", body) for body in PEM.findall(text)}


LOCAL_CAS = Path("/usr/local/share/ca-certificates")
DEFAULT_BUILD_CA = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture(scope="module")
def needles() -> list[bytes]:
    build_ca = os.environ.get("ZK0_BUILD_CA", DEFAULT_BUILD_CA)
    if build_ca and build_ca != DEFAULT_BUILD_CA and Path(build_ca).is_file():
        sources = [Path(build_ca)]
    else:
        sources = sorted(LOCAL_CAS.rglob("*.crt")) if LOCAL_CAS.is_dir() else []
    found: list[bytes] = []
    for source in sources:
        for body in sorted(certificates(source.read_text(errors="replace"))):
            der = base64.b64decode(body)
            middle = len(der) // 2
            found.append(der[middle : middle + 48])  # raw DER
            lines = [body[i : i + 64] for i in range(0, len(body), 64)]
            found.append(lines[len(lines) // 2].encode())  # a PEM line, not a shared header
    return found


def scan(stream, needles: list[bytes], label: str, hits: list[str]) -> None:
    keep = max((len(n) for n in needles), default=1) - 1
    tail = b""
    while chunk := stream.read(CHUNK):
        window = tail + chunk
        for needle in needles:
            if window.find(needle) >= 0:
                hits.append(f"{label}: CA content")
                return
        tail = window[-keep:] if keep else b""


def _saved(image: str) -> tuple[IO[bytes], subprocess.Popen | None]:
    """`docker save` of the image: the lab's archive when it holds this very image (`make test`
    makes it before this tier; writing 7 GB again costs minutes), else a fresh one."""
    from lab.config import LabConfig
    from lab.hosts import image_archive

    cfg = LabConfig()
    if cfg.zk0_image == image and (archive := image_archive(cfg)) is not None:
        return archive.open("rb"), None
    proc = subprocess.Popen([DOCKER, "save", image], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    return proc.stdout, proc


def test_build_ca_in_no_layer(image, needles):
    hits: list[str] = []
    files = 0
    stream, proc = _saved(image)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as outer:
            for member in outer:
                if not member.isfile():
                    continue
                content = outer.extractfile(member)
                if not member.name.endswith("layer.tar"):
                    scan(content, needles, member.name, hits)
                    continue
                with tarfile.open(fileobj=content, mode="r|") as layer:
                    for entry in layer:
                        files += 1
                        label = f"{member.name}:{entry.name}"
                        if any(s in entry.name for s in SUSPICIOUS_NAMES):
                            hits.append(f"{label}: suspicious name")
                        if entry.isfile() and needles:
                            scan(layer.extractfile(entry), needles, label, hits)
    finally:
        stream.close()
        assert proc is None or proc.wait(timeout=60) == 0
    assert files > 10_000  # the scan really walked the venv
    assert hits == []


def test_build_ca_not_in_metadata(image, needles):
    history = docker("history", "--no-trunc", image).stdout
    config = docker("image", "inspect", image).stdout
    for text in (history, config):
        assert "BEGIN CERTIFICATE" not in text
        for needle in needles:
            assert needle.decode("latin-1") not in text


def test_this_host_exercises_the_check(needles):
    """Informational: on a host without an extra CA the content scan has nothing to find."""
    if not needles:
        pytest.skip("no local CA on this host: the content scan had nothing to look for")
