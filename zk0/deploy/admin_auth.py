"""The admin's bearer token for the Control API behind the edge proxy.

Open-source Flower 1.42 has no Control API authentication, so the proxy's admin listener
checks ``Authorization: Bearer <token>``. The unmodified ``flwr`` CLI sends that header on
every Control call when its credential store (``$FLWR_HOME/credentials.yaml``) marks the
connection's address as ``oidc`` with an access token
(flwr.cli.cli_account_auth_interceptor); :func:`login` writes exactly those entries. The
refresh token is never sent; the proxy answers a bad token with a bare 401 (no
``WWW-Authenticate``), so flwr reports it rather than trying to refresh.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from zk0.deploy.connection import CONFIG_FILE, flwr_home

if TYPE_CHECKING:
    from flwr.cli.auth_plugin import CliAuthPlugin

CREDENTIALS_FILE = "credentials.yaml"
TOKEN_BYTES = 32
_UNUSED_REFRESH = "zk0-static-token"  # flwr needs a pair; only the access token travels


class AdminAuthError(RuntimeError):
    """The admin credential could not be read or stored; the message says how to fix it."""


def new_token() -> str:
    """A 32-byte random token, hex encoded (64 characters)."""
    return secrets.token_hex(TOKEN_BYTES)


def write_token(path: Path) -> tuple[str, bool]:
    """The token in ``path`` (made, mode 0600, when missing); returns (token, created)."""
    path = Path(path)
    if path.exists():
        return read_token(path), False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = new_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, True


def read_token(path: Path) -> str:
    from zk0.deploy.proxy.render import TOKEN_PATTERN

    path = Path(path).expanduser()
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise AdminAuthError(
            f"cannot read the admin token {path} ({err.strerror}): the superlink role writes it "
            "next to the federation CA on the control machine (pki/admin.token)"
        ) from err
    if not TOKEN_PATTERN.fullmatch(token):
        raise AdminAuthError(f"{path} does not hold an admin token (32-256 characters of A-Z a-z 0-9 _ -)")
    return token


def connection_address(connection: str, home: Path | None = None) -> str:
    path = (Path(home) if home else flwr_home()) / CONFIG_FILE
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))["superlink"][connection]
        return str(table["address"])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as err:
        raise AdminAuthError(
            f"no connection {connection!r} in {path}: write it first (zk0bot server start, or "
            "[superlink.NAME] with address = the admin listener and root-certificates = ca.pem)"
        ) from err


def _store(home: Path | None = None):
    from flwr.supercore.credential_store.file_credential_store import FileCredentialStore

    return FileCredentialStore((Path(home) if home else flwr_home()) / CREDENTIALS_FILE)


def login(connection: str, token: str, home: Path | None = None) -> Path:
    """Store ``token`` for the connection's address where ``flwr`` reads it; returns the file."""
    from flwr.cli.constant import ACCESS_TOKEN_STORE_KEY, AUTHN_TYPE_STORE_KEY, REFRESH_TOKEN_STORE_KEY
    from flwr.common.constant import AuthnType

    address = connection_address(connection, home)
    store = _store(home)
    store.set(AUTHN_TYPE_STORE_KEY % address, AuthnType.OIDC.encode())
    store.set(ACCESS_TOKEN_STORE_KEY % address, token.encode())
    store.set(REFRESH_TOKEN_STORE_KEY % address, _UNUSED_REFRESH.encode())
    Path(store.file_path).chmod(0o600)
    return Path(store.file_path)


def auth_plugin(address: str, home: Path | None = None) -> CliAuthPlugin:
    """flwr's CLI auth plugin for ``address``, reading the credential store of ``home``.

    Flower fixes its store's path when it is first imported; in-process callers that switch
    ``FLWR_HOME`` (tests, zk0bot) get the store of the home in effect now.
    """
    from flwr.cli.auth_plugin import OidcCliPlugin
    from flwr.cli.auth_plugin.noop_auth_plugin import NoOpCliAuthPlugin
    from flwr.cli.constant import AUTHN_TYPE_STORE_KEY
    from flwr.common.constant import AuthnType

    store = _store(home)
    kind = store.get(AUTHN_TYPE_STORE_KEY % address)
    if kind != AuthnType.OIDC.encode():
        return NoOpCliAuthPlugin(address)  # holds no store
    plugin = OidcCliPlugin(address)
    plugin.store = store
    return plugin
