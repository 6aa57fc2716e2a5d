"""`zk0bot config show|set`: the saved client/server settings (wiring for zk0.bot.config)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from zk0.bot import config
from zk0.bot.cli_common import err, handled, out

config_app = typer.Typer(
    help="The settings `client start` and `server start` saved (no secrets: those stay in --secrets-file).",
    no_args_is_help=True,
)


@config_app.command("show")
@handled
def config_show(
    side: Annotated[str | None, typer.Argument(help="client or server [default: every side saved here].")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help='One JSON object: {"client": {...}, "server": {...}}.')
    ] = False,
) -> None:
    """Print the saved settings as `key: value` lines (the secrets file's path, never its content)."""
    sides = [side] if side else config.saved_sides()
    if not sides:
        raise config.nothing_saved()
    shown = {s: asdict(config.require(s)) for s in sides}
    if as_json:
        out.print(json.dumps(shown, indent=1, sort_keys=True), markup=False)
        return
    for name, values in shown.items():
        indent = "" if side else "  "
        if not side:
            out.print(f"{name}:")
        err.print(f"{name} settings: {config.settings_path(name)}", style="dim")
        for key, value in values.items():
            out.print(f"{indent}{key}: {config.render(value)}", markup=False)


@config_app.command("set")
@handled
def config_set(
    side: Annotated[str, typer.Argument(help="client or server.")],
    key: Annotated[str, typer.Argument(help="A setting's name, as `zk0bot config show` prints it.")],
    value: Annotated[str, typer.Argument(help="Its new value (none clears an optional one).")],
) -> None:
    """Change one saved setting; the next `start` (and `stop|status|logs`) uses it."""
    old, new, path = config.set_value(side, key, value)
    err.print(f"{side} {key}: {config.render(old)} -> {config.render(new)} (saved in {path})", markup=False)
