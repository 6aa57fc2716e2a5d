"""The admin's `flwr` connection to the SuperLink, in ``$FLWR_HOME/config.toml`` (Flower 1.42).

Schema (flwr.cli.flower_config / flwr.cli.constant.SuperLinkConnectionTomlKey)::

    [superlink]
    default = "zk0"

    [superlink.zk0]
    address = "link.example.org:8000"
    root-certificates = "/abs/path/ca.pem"

Other connections and keys in the file are kept; the file is replaced atomically.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import tomli_w

CONFIG_FILE = "config.toml"


def flwr_home() -> Path:
    """``$FLWR_HOME`` if set, else Flower's default ``~/.flwr``."""
    env = os.environ.get("FLWR_HOME")
    return Path(env) if env else Path.home() / ".flwr"


@contextmanager
def using_flwr_home(home: Path) -> Iterator[None]:
    """In-process flwr client calls (enrollment, run status) read ``home``'s connections."""
    old = os.environ.get("FLWR_HOME")
    os.environ["FLWR_HOME"] = str(home)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("FLWR_HOME", None)
        else:
            os.environ["FLWR_HOME"] = old


def write_connection(
    name: str,
    address: str,
    root_certificates: Path,
    home: Path | None = None,
    make_default: bool = True,
) -> Path:
    """Add or replace ``[superlink.<name>]``; returns the config file's path."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"Connection name {name!r}: use letters, digits, '-' or '_'.")
    from zk0.validate import parse_hostport

    parse_hostport(address, "SuperLink address")  # HOST:PORT, port 1-65535, no scheme
    ca = Path(root_certificates).expanduser().resolve()
    if not ca.is_file():
        raise FileNotFoundError(f"CA certificate {ca} does not exist: copy the federation's ca.pem there.")
    return update_connection(name, {"address": address, "root-certificates": str(ca)}, home, make_default)


def update_connection(name: str, table: dict, home: Path | None = None, make_default: bool = True) -> Path:
    """Set ``[superlink.<name>]`` to ``table``, keeping the rest of the file; atomic, 0600."""
    home = Path(home) if home else flwr_home()
    path = home / CONFIG_FILE
    data: dict = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path} is not valid TOML ({err}); fix or move it away.") from err
    superlink = data.setdefault("superlink", {})
    superlink[name] = table
    if make_default or "default" not in superlink:
        superlink["default"] = name
    home.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=home, prefix=".config.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(data, fh)
        Path(tmp).chmod(0o600)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
