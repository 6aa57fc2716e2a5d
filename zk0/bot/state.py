"""Where zk0bot keeps its files on the operator's machine, and how it reads secrets.

Layout (``$ZK0BOT_HOME``, default ``$XDG_STATE_HOME/zk0bot`` = ``~/.local/state/zk0bot``)::

    client/settings.json      what `client start` was last given (no secrets), reused by
                              later `client start|stop|status|logs` calls
    client/inventory.json     the generated Ansible inventory of the last run
    client/node-keys/H.pub    the node's public key, fetched by the supernode role
    server/settings.json      the same for `server ...`
    server/nodes.json         enrolled nodes: the superlink role's superlink_authorized_nodes
    server/node-keys/N.pub    their public keys
    server/pki/               the federation CA (ca.key stays here, 0600) made by the role
    */logs/*.log              full ansible-playbook output of each run

Secrets (HF token, wandb key, Tailscale auth key) are read from the environment or from a 0600 env file, handed
to ansible-playbook in a 0600 extra-vars file that is deleted after the run, and never put
on a command line, in settings.json or in a log.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zk0.bot.errors import BotError, ExitCode

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def home() -> Path:
    env = os.environ.get("ZK0BOT_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "zk0bot"


def side_dir(side: str, base: Path | None = None) -> Path:
    """``client`` or ``server`` directory, created private (0700): it holds the CA key."""
    path = (Path(base) if base else home()) / side
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_json(path: Path, default: object) -> object:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise BotError(f"{path} is not valid JSON ({err})", f"fix or delete {path}", ExitCode.USAGE) from err


def save_json(path: Path, data: object) -> None:
    write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_settings[T: DataclassInstance](cls: type[T], path: Path) -> T | None:
    """A settings dataclass saved by an earlier command; keys it no longer has are ignored."""
    data = load_json(path, None)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise BotError(f"{path} does not hold saved settings (a JSON object)", f"fix or delete {path}", ExitCode.USAGE)
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def merge_settings[T: DataclassInstance](cls: type[T], saved: T | None, given: dict[str, object]) -> T:
    """Options given now win; the rest come from the saved settings, then the defaults."""
    base: dict[str, Any] = asdict(saved) if saved else {}
    base.update({k: v for k, v in given.items() if v not in (None, "", [], {})})
    return cls(**base)


# ---------------------------------------------------------------- secrets

SECRET_NAMES = ("HF_TOKEN", "WANDB_API_KEY", "TAILSCALE_AUTH_KEY")


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, optional quotes); the file must be 0600 or stricter."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BotError(
            f"Secrets file {path} does not exist", "create it with KEY=VALUE lines, mode 0600", ExitCode.NOT_FOUND
        )
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BotError(f"Secrets file {path} is readable by other users", f"run `chmod 600 {path}`", ExitCode.USAGE)
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        values[key.strip()] = value.strip().strip("'\"")
    return values


def read_secrets(secrets_file: Path | None) -> dict[str, str]:
    """HF_TOKEN / WANDB_API_KEY / TAILSCALE_AUTH_KEY: the file's values win over the environment's;
    empty ones dropped."""
    found = {name: os.environ.get(name, "") for name in SECRET_NAMES}
    if secrets_file is not None:
        found.update({k: v for k, v in read_env_file(secrets_file).items() if k in SECRET_NAMES})
    return {k: v for k, v in found.items() if v}
