"""Which app bundles a zk0-supernode runs: an allowlist of FAB content hashes.

Anyone who can reach the SuperLink's Control API can submit a run (see docs/SECURITY.md), and
its ClientApp would run on every node with the node's dataset, key and tokens. So a node runs
a task only when the SHA-256 of the FAB bytes it received (not the hash the SuperLink claims)
is on its allowlist, and checks that before the bundle is installed or imported.

The allowlist is the union of:
  * the file named by ``ZK0_TRUSTED_APPS_FILE`` (default ``/opt/zk0/trusted-apps.txt``, written
    into the image at build time with the hash of the release it was built from);
  * the file named by ``ZK0_TRUSTED_APPS_EXTRA_FILE`` (the operator's own; the supernode role
    renders ``supernode_trusted_app_hashes`` into it);
  * ``ZK0_TRUSTED_APP_HASHES``: hashes, comma or space separated (quick additions, tests).
Files hold one sha256 hex per line; ``#`` starts a comment. Nothing listed: nothing runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("zk0.supernode")

FILE_ENV = "ZK0_TRUSTED_APPS_FILE"
EXTRA_FILE_ENV = "ZK0_TRUSTED_APPS_EXTRA_FILE"
HASHES_ENV = "ZK0_TRUSTED_APP_HASHES"
DEFAULT_FILE = Path("/opt/zk0/trusted-apps.txt")
HOW_TO_TRUST = (
    f"to trust an app, add the SHA-256 that `zk0 app hash` prints for its release checkout to the "
    f"role variable supernode_trusted_app_hashes (rendered into the file named by {EXTRA_FILE_ENV}), "
    f"to {HASHES_ENV} (comma/space separated) or to the file named by {FILE_ENV} (default {DEFAULT_FILE}), "
    f"then restart the node"
)
_HEX64 = re.compile(r"[0-9a-f]{64}")


class TrustError(ValueError):
    """The allowlist cannot be read or holds something that is not a SHA-256."""


class AppNotTrusted(RuntimeError):
    """Raised in the ClientApp process instead of installing a bundle; its text reaches the
    server, so it names nothing of the node (no hash list, no paths)."""

    def __init__(self) -> None:
        super().__init__("this app is not trusted by this node")


def parse_hashes(text: str, source: str) -> set[str]:
    """Hashes in an allowlist file's ``text``; a bad line raises with its number."""
    hashes = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not _HEX64.fullmatch(line):
            raise TrustError(f"{source}:{number}: {line!r} is not a SHA-256 (64 lowercase hex characters)")
        hashes.add(line)
    return hashes


def load_allowlist(env: dict[str, str] | None = None) -> frozenset[str]:
    """The hashes this node trusts, from the file and the variable (see the module docstring)."""
    env = dict(os.environ if env is None else env)
    hashes: set[str] = set()
    for var, default in ((FILE_ENV, DEFAULT_FILE), (EXTRA_FILE_ENV, None)):
        named = env.get(var, "")
        path = Path(named) if named else default
        if path is None or (not named and not path.exists()):
            continue  # no image default (a dev checkout): the other sources decide
        try:
            hashes |= parse_hashes(path.read_text(), str(path))
        except FileNotFoundError:  # named on purpose but missing: say so, don't trust nothing quietly
            raise TrustError(f"{var}={path} does not exist") from None
        except OSError as err:
            raise TrustError(f"cannot read {var}={path}: {err}") from err
    extra = env.get(HASHES_ENV, "")
    hashes |= parse_hashes("\n".join(extra.replace(",", " ").split()), HASHES_ENV)
    return frozenset(hashes)


def fab_sha256(fab: bytes) -> str:
    return hashlib.sha256(fab).hexdigest()


def build_fab(app_dir: Path) -> bytes:
    """The FAB that ``flwr run APP_DIR`` uploads: Flower's own builder, deterministic for the
    same files (fixed zip dates, sorted paths; run-config overrides are not part of it)."""
    from flwr.cli.build import build_fab_from_disk

    return build_fab_from_disk(Path(app_dir))


def app_hash(path: Path) -> str:
    """The hash a node sees for ``flwr run PATH`` (a directory) or for a ``.fab`` file."""
    path = Path(path)
    return fab_sha256(path.read_bytes() if path.is_file() else build_fab(path))


def guarded_install(install: Callable[..., Path], allowed: frozenset[str]) -> Callable[..., Path]:
    """``install`` (Flower's ``install_from_fab``) that first refuses bundles not in ``allowed``."""

    def install_if_trusted(fab_file: Path | bytes, *args: object, **kwargs: object) -> Path:
        content = fab_file if isinstance(fab_file, bytes) else Path(fab_file).read_bytes()
        digest = fab_sha256(content)
        if digest not in allowed:
            log.error("refused an app bundle with SHA-256 %s: not on this node's allowlist; %s", digest, HOW_TO_TRUST)
            raise AppNotTrusted()
        log.info("app bundle %s is trusted; installing it", digest[:12])
        return install(fab_file, *args, **kwargs)

    return install_if_trusted
