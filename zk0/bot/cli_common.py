"""What every `zk0bot` command module shares: the two consoles, the error handler, the
option types and the small steps the client and server commands both take.

Results go to ``out`` (stdout); spinners, progress, notes and errors to ``err`` (stderr), so
``zk0bot keys show > node.pub`` and ``zk0bot server nodes --json`` pipe cleanly.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from zk0.bot import client, playbook, state
from zk0.bot.errors import BotError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def handled[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a BotError into its one-sentence message on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except BotError as e:
            err.print(f"[red]error:[/red] {e}", markup=True)
            raise typer.Exit(int(e.code)) from None

    return wrapper


# ---------------------------------------------------------------- shared options
HostOpt = Annotated[str, typer.Option("--host", help="Run against [user@]address over SSH instead of this machine.")]
SshPortOpt = Annotated[int | None, typer.Option("--ssh-port", help="SSH port of --host.")]
SshKeyOpt = Annotated[Path | None, typer.Option("--ssh-key", help="SSH private key for --host.")]
ImageOpt = Annotated[str, typer.Option("--image", help=f"zk0 image [default: {client.DEFAULT_IMAGE}].")]
ImageSourceOpt = Annotated[str, typer.Option("--image-source", help="pull | archive | local [default: pull].")]
VarOpt = Annotated[list[str], typer.Option("--var", help="Extra role variable KEY=VALUE (no secrets); repeatable.")]
CheckOpt = Annotated[bool, typer.Option("--check", help="Ansible check mode: show what would change, change nothing.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Stream ansible-playbook's output.")]
BecomeOpt = Annotated[bool, typer.Option("--ask-become-pass", "-K", help="Ask for the sudo password.")]
SecretsOpt = Annotated[
    Path | None,
    typer.Option(
        "--secrets-file",
        help="0600 file with HF_TOKEN= / WANDB_API_KEY= / TAILSCALE_AUTH_KEY= lines (else from the environment); "
        "a Tailscale key also turns the tailscale role on.",
    ),
]
TailOpt = Annotated[int, typer.Option("--tail", min=1, help="Log lines to show.")]
ConnOpt = Annotated[str, typer.Option("--connection", help="flwr connection name in $FLWR_HOME/config.toml.")]
PkiOpt = Annotated[Path, typer.Option("--pki-dir", help="Directory of the node key pair.")]


# ---------------------------------------------------------------- steps both sides take
def report_playbook(result: playbook.PlaybookResult, check: bool, what: str) -> None:
    counts = {k: sum(r.get(k, 0) for r in result.recap.values()) for k in ("ok", "changed", "failed", "unreachable")}
    summary = f"{len(result.tasks)} tasks, {counts['changed']} {'would change' if check else 'changed'}"
    if not result.ok:
        problem = f"{what} failed ({summary}): {result.problem}"
        raise BotError(problem, f"fix what the message names, then run the command again; full log: {result.log}")
    err.print(f"{what}{' (check mode)' if check else ''}: ok, {summary}; log: {result.log}")


def run_secrets(secrets_file: str, used: tuple[str, ...]) -> dict[str, str]:
    """Secrets for this run; say so when there are none, since the role then writes an empty
    secrets file on the host (a token given on an earlier run is not kept)."""
    found = state.read_secrets(Path(secrets_file) if secrets_file else None)
    missing = [name for name in used if name not in found]
    if missing:
        err.print(f"note: no {' or '.join(missing)} (environment or --secrets-file): the host runs without it")
    return found


def extra_vars(saved: dict[str, object] | None, given: list[str], book: str) -> dict[str, object]:
    """Saved ``--var`` values plus the new ones; names the playbook's roles do not know, and names
    of secrets, are refused (new) or dropped with a note (saved by an older zk0bot)."""
    new = playbook.parse_vars(given, book)
    kept, dropped = playbook.known_saved_vars(saved or {}, book) if saved else ({}, [])
    if dropped:
        err.print(
            f"note: dropped the saved --var {', '.join(dropped)}: not a variable of {Path(book).name}'s roles, "
            "or a secret"
        )
    return {**kept, **new}


def spinner(text: str, quiet: bool = False):
    """A spinner on stderr; none when output is streamed or a password prompt must stay readable."""
    return contextlib.nullcontext() if quiet else err.status(text, spinner="dots")


def compose_control(
    control: Callable[..., dict], where: str, fix: str, action: str, tail: int, ask_become_pass: bool
) -> dict:
    """`docker compose <action>` on the node or the server (``control`` is client.control or
    server.control); a failed command is a BotError."""
    with spinner(f"{action} on the {where}", ask_become_pass):
        result = control(action, tail=tail, ask_become_pass=ask_become_pass)
    if result.get("rc") != 0:  # ansible reports a command it could not start without rc
        raise BotError(
            f"docker compose {action} failed on the {where}: {(result.get('stderr') or result.get('msg', ''))[-400:]}",
            fix,
        )
    return result


def stack_up(rows: list[dict]) -> bool:
    """Every container of the stack (the server has three) must be running and healthy."""
    return bool(rows) and all(r.get("State") == "running" and r.get("Health") in ("healthy", "") for r in rows)


def print_rows(rows: list[dict], indent: str = "") -> None:
    if not rows:
        out.print(f"{indent}not running (no container)")
    for r in rows:
        out.print(
            f"{indent}{r.get('Service', '?')}: {r.get('State', '?')} {r.get('Health') or ''} ({r.get('Status', '')})"
        )


def print_ps(stdout: str, as_json: bool) -> bool:
    """`docker compose ps` as lines (or JSON); True when the whole stack is up."""
    rows = client.parse_ps(stdout)
    if as_json:
        out.print(json.dumps(rows, indent=1))
    else:
        print_rows(rows)
    return stack_up(rows)
