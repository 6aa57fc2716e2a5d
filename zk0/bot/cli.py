"""`zk0bot`: the front door for node operators and the federation admin.

Wiring only: each command parses options, calls its module (client, server, runs, keys,
doctor, config) and renders the outcome. This module is the root command (`status`,
`doctor`, `paths`, `--version`) and mounts the groups: cli_client, cli_server, cli_keys,
cli_config; what they share (consoles, options, the error handler) is cli_common.
Results go to stdout; spinners, progress and errors to stderr, so
``zk0bot keys show > node.pub`` and ``zk0bot server nodes --json`` pipe cleanly.
Errors are one sentence with the fix, and the exit code says what kind of failure it was
(zk0.bot.errors.ExitCode). Saved settings and logs: ``$ZK0BOT_HOME`` (zk0.bot.state).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from zk0.bot import client, config, doctor, keys, playbook, state
from zk0.bot.cli_client import client_app, client_control
from zk0.bot.cli_common import BecomeOpt, PkiOpt, handled, out, print_rows, spinner, stack_up
from zk0.bot.cli_config import config_app
from zk0.bot.cli_keys import keys_app
from zk0.bot.cli_server import server_app, server_control
from zk0.bot.errors import BotError, ExitCode

app = typer.Typer(
    name="zk0bot",
    help="zk0bot: run a zk0 node or the federation server.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.add_typer(client_app, name="client")
app.add_typer(server_app, name="server")
app.add_typer(keys_app, name="keys")
app.add_typer(config_app, name="config")


@app.command("status")
@handled
def status(
    as_json: Annotated[
        bool, typer.Option("--json", help='docker compose ps as one JSON object: {"client": [...], "server": [...]}.')
    ] = False,
    ask_become_pass: BecomeOpt = False,
) -> None:
    """Show the containers zk0bot runs from here (the node's and/or the server's); exit 1 unless all are up.

    What `client status` and `server status` show, client first, for each side with saved settings."""
    controls = {"client": client_control, "server": server_control}
    sides = config.saved_sides()
    if not sides:
        raise config.nothing_saved()
    rows = {
        side: client.parse_ps(controls[side]("status", ask_become_pass=ask_become_pass).get("stdout", ""))
        for side in sides
    }
    if as_json:
        out.print(json.dumps(rows, indent=1), markup=False)
    else:
        for side, side_rows in rows.items():
            out.print(f"{side} ({config.require(side).target.name}):", markup=False)
            print_rows(side_rows, indent="  ")
    if not all(stack_up(side_rows) for side_rows in rows.values()):
        raise typer.Exit(int(ExitCode.FAILED))


@app.command("doctor")
@handled
def doctor_cmd(
    superlink: Annotated[str | None, typer.Option("--superlink", help="HOST:PORT of the SuperLink to test.")] = None,
    ca: Annotated[Path | None, typer.Option("--ca", help="The federation's ca.pem.")] = None,
    check: Annotated[list[str], typer.Option("--check", help=f"Only these checks: {', '.join(doctor.CHECKS)}.")] = [],  # noqa: B006
    pki_dir: PkiOpt = keys.DEFAULT_PKI_DIR,
) -> None:
    """Check Docker, Compose, GPU, disk, Ansible, the node key and the SuperLink; say what to fix."""
    saved = client.load_settings()
    if saved and not superlink and not check:
        superlink, ca = saved.superlink, ca or (Path(saved.ca) if saved.ca else None)
    with spinner("checking"):
        results = doctor.run_checks(list(check), superlink, ca, pki_dir)
    colors = {doctor.OK: "green", doctor.WARN: "yellow", doctor.FAIL: "red"}
    for c in results:
        out.print(f"[{colors[c.status]}]{c.status:<4}[/] {c.name:<9} {c.detail}", markup=True)
        if c.fix:
            out.print(f"               fix: {c.fix}", markup=False)
    raise typer.Exit(int(doctor.exit_code(results)))


@app.command("paths")
@handled
def paths() -> None:
    """Show where zk0bot finds its playbooks and Ansible and keeps its state."""
    out.print(f"playbooks: {playbook.assets_dir() / 'playbooks'}")
    out.print(f"roles: {playbook.assets_dir() / 'roles'}")
    try:
        out.print(f"ansible-playbook: {playbook.ansible_playbook()}")
    except BotError as e:
        out.print(f"ansible-playbook: missing ({e.fix})")
    out.print(f"state: {state.home()}")


def _version(value: bool) -> None:
    if value:
        from zk0 import __version__

        out.print(f"zk0bot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """zk0bot: run a zk0 node or the federation server. State: $ZK0BOT_HOME (~/.local/state/zk0bot)."""
