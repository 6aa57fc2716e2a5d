"""`zk0bot config show|set`: the settings `client start` / `server start` saved, read and
changed one field at a time.

A value given as text is converted to the type the settings dataclass declares for the
field (zk0.bot.client.ClientSettings, zk0.bot.server.ServerSettings), so a later ``start``
reads back exactly what it would have saved itself. Secrets are never saved settings: a
field whose name looks like one (zk0.bot.playbook.SECRET_NAME_PATTERNS) is refused, and
``extra_vars`` takes only names ``--var`` would accept.
"""

from __future__ import annotations

import fnmatch
import json
import types
import typing
from dataclasses import asdict, fields
from pathlib import Path

from zk0.bot import client, playbook, server
from zk0.bot.errors import BotError, ExitCode
from zk0.bot.state import save_json

SIDES = ("client", "server")
Settings = client.ClientSettings | server.ServerSettings
_CLASSES: dict[str, type[client.ClientSettings] | type[server.ServerSettings]] = {
    "client": client.ClientSettings,
    "server": server.ServerSettings,
}
_PLAYBOOKS = {"client": "client.yml", "server": "server.yml"}
# Stored absolute, as `start` stores them: a relative path would follow the directory of each later call.
_PATH_FIELDS = ("ca", "secrets_file")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _check_side(side: str) -> str:
    if side not in SIDES:
        raise BotError(f"{side!r} is not client or server", "name the side: client or server", ExitCode.USAGE)
    return side


def settings_path(side: str, base: Path | None = None) -> Path:
    return (client if _check_side(side) == "client" else server).settings_path(base)


def load(side: str, base: Path | None = None) -> Settings | None:
    """The side's saved settings, or None when `<side> start` never saved any here."""
    return (client if _check_side(side) == "client" else server).load_settings(base)


def require(side: str, base: Path | None = None) -> Settings:
    saved = load(side, base)
    if saved is None:
        raise BotError(
            f"No {side} settings are saved on this machine ({settings_path(side, base)})",
            f"run `zk0bot {side} start` first: it saves them",
            ExitCode.NOT_CONFIGURED,
        )
    return saved


def nothing_saved() -> BotError:
    """Neither side has saved settings here: nothing to show or check yet."""
    return BotError(
        "zk0bot manages nothing from this machine yet (no saved client or server settings)",
        "run `zk0bot client start --dataset ... --superlink ... --ca ...` (a node) "
        "or `zk0bot server start --san ...` (the server) first",
        ExitCode.NOT_CONFIGURED,
    )


def saved_sides(base: Path | None = None) -> list[str]:
    """The sides with saved settings, client first."""
    return [side for side in SIDES if load(side, base) is not None]


def render(value: object) -> str:
    """One setting as text: strings as they are, everything else as JSON (null, true, [..])."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _secret_name(name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), pattern) for pattern in playbook.SECRET_NAME_PATTERNS)


def settable(side: str) -> list[str]:
    return sorted(f.name for f in fields(_CLASSES[_check_side(side)]) if not _secret_name(f.name))


def _expected(hint: object) -> tuple[object, bool]:
    """The field's type without ``| None``, and whether None is allowed."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (types.UnionType, typing.Union) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


_TYPE_NAMES = (
    (bool, "a boolean (true or false)"),
    (int, "an integer"),
    (str, "text"),
    (list, "a list (a,b,c or a JSON list)"),
    (dict, "a JSON object"),
)


def _type_name(hint: object, optional: bool) -> str:
    kind = typing.get_origin(hint) or hint
    name = next((text for t, text in _TYPE_NAMES if kind is t), str(hint))
    return f"{name}, or none" if optional else name


def convert(name: str, text: str, hint: object) -> object:
    """``text`` as the declared type ``hint``; a ValueError names what was expected."""
    expected, optional = _expected(hint)
    origin = typing.get_origin(expected) or expected
    wanted = _type_name(expected, optional)
    if optional and text.strip().lower() in ("", "none", "null"):
        return None
    if origin is str:
        return text
    if origin is bool:
        if text.strip().lower() in _TRUE + _FALSE:
            return text.strip().lower() in _TRUE
        raise ValueError(f"{name} takes {wanted}, not {text!r}")
    if origin is int:
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"{name} takes {wanted}, not {text!r}") from None
    if origin is list:
        if text.strip().startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError(f"{name} takes {wanted}, not {text!r}") from None
        else:
            items = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"{name} takes {wanted} of text, not {text!r}")
        return items
    if origin is dict:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise ValueError(f'{name} takes {wanted}, e.g. \'{{"supernode_wandb_mode": "online"}}\', not {text!r}')
        return value
    raise ValueError(f"{name} has the type {expected}, which `config set` cannot write")


def set_value(side: str, name: str, text: str, base: Path | None = None) -> tuple[object, object, Path]:
    """Change one saved setting; returns its old value, its new value and the file written."""
    saved = require(side, base)
    valid = settable(side)
    if _secret_name(name):
        raise BotError(
            f"{name} names a secret, and secrets are never saved in settings.json",
            "put it in the 0600 file given with --secrets-file",
            ExitCode.USAGE,
        )
    if name not in valid:
        raise BotError(f"{name!r} is not a saved {side} setting", f"use one of: {', '.join(valid)}", ExitCode.USAGE)
    hint = typing.get_type_hints(type(saved))[name]
    try:
        value = convert(name, text, hint)
    except ValueError as err:
        raise BotError(str(err), f"give {name} a value of that type", ExitCode.USAGE) from None
    if name in _PATH_FIELDS and value:
        value = str(Path(str(value)).expanduser().resolve())
    if name == "extra_vars":
        # The same names `--var` accepts: role variables only, never a secret.
        for var in typing.cast(dict, value):
            playbook.check_var_name(var, _PLAYBOOKS[side])
    old = getattr(saved, name)
    path = settings_path(side, base)
    save_json(path, {**asdict(saved), name: value})
    return old, value, path
