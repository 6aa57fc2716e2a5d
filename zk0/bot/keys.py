"""`zk0bot keys show`: this node's public key and fingerprint, to paste into the application.

The supernode role makes the pair on the node (``<pki-dir>/supernode.key`` 0600 and
``supernode.key.pub``); ``zk0 pki node-key`` names the public half ``supernode.pub``. Both
names are read. Only the public key is ever printed; the private key is not opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zk0.bot.errors import BotError, ExitCode

DEFAULT_PKI_DIR = Path("/etc/zk0/client/pki")
PUBLIC_NAMES = ("supernode.key.pub", "supernode.pub")


@dataclass(frozen=True)
class PublicKey:
    path: Path
    line: str
    fingerprint: str


def find_public_key(pki_dir: Path = DEFAULT_PKI_DIR) -> Path:
    pki_dir = Path(pki_dir).expanduser()
    for name in PUBLIC_NAMES:
        path = pki_dir / name
        if path.exists():
            return path
    raise BotError(
        f"No node key in {pki_dir}",
        f"run `zk0bot keys create -K --pki-dir {pki_dir}` (the supernode role makes the pair on this node)",
        ExitCode.NOT_FOUND,
    )


def show(pki_dir: Path = DEFAULT_PKI_DIR, path: Path | None = None) -> PublicKey:
    """Read and check the public key (``path`` wins over ``pki_dir``)."""
    from cryptography.exceptions import UnsupportedAlgorithm

    from zk0.deploy.enrollment import EnrollmentError, fingerprint, load_public_key

    path = Path(path) if path else find_public_key(pki_dir)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except PermissionError as err:
        raise BotError(
            f"{path} is not readable by this user",
            f"read it as root (`sudo cat {path}`) or pass --file with a readable copy",
            ExitCode.NOT_FOUND,
        ) from err
    try:
        key = load_public_key(path)
    except (EnrollmentError, UnsupportedAlgorithm) as err:  # the latter: not a key type at all
        problem = str(err) if isinstance(err, EnrollmentError) else f"{path} is not an OpenSSH public key ({err})"
        raise BotError(
            problem, f"move {path} away and run `zk0bot keys create` to make a new pair", ExitCode.USAGE
        ) from err
    return PublicKey(path=path, line=text.splitlines()[0], fingerprint=fingerprint(key))
