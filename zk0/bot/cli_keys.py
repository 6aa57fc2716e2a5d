"""`zk0bot keys ...`: this node's authentication key (wiring for zk0.bot.keys)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zk0.bot import client, keys
from zk0.bot.cli_common import (
    BecomeOpt,
    CheckOpt,
    HostOpt,
    PkiOpt,
    SshKeyOpt,
    SshPortOpt,
    VarOpt,
    VerboseOpt,
    err,
    extra_vars,
    handled,
    out,
    report_playbook,
    spinner,
)

keys_app = typer.Typer(help="This node's authentication key.", no_args_is_help=True)


@keys_app.command("show")
@handled
def keys_show(
    pki_dir: PkiOpt = keys.DEFAULT_PKI_DIR, path: Annotated[Path | None, typer.Option("--file")] = None
) -> None:
    """Print this node's public key (paste it into the application); its fingerprint goes to stderr."""
    key = keys.show(pki_dir, path)
    out.print(key.line, markup=False)
    err.print(f"{key.path}  fingerprint {key.fingerprint}")


@keys_app.command("create")
@handled
def keys_create(
    pki_dir: PkiOpt = keys.DEFAULT_PKI_DIR,
    host: HostOpt = "",
    ssh_port: SshPortOpt = None,
    ssh_key: SshKeyOpt = None,
    var: VarOpt = [],  # noqa: B006
    check: CheckOpt = False,
    verbose: VerboseOpt = False,
    ask_become_pass: BecomeOpt = False,
) -> None:
    """Make this node's key pair on the node (before applying) and print the public key; an existing key is kept."""
    saved = client.load_settings()
    s = client.merge(
        saved,
        host=host,
        ssh_port=ssh_port,
        ssh_key=str(ssh_key) if ssh_key else "",
        pki_dir=str(pki_dir),
        extra_vars=extra_vars(saved.extra_vars if saved else None, var, str(client.NODE_KEY_PLAYBOOK)),
    )
    with spinner(f"node key on {s.target.name}", verbose or ask_become_pass) as status:
        result, pub = client.create_key(s, check=check, ask_become_pass=ask_become_pass, verbose=verbose, status=status)
    report_playbook(result, check, "node key")
    if not check:
        key = keys.show(path=pub)
        out.print(key.line, markup=False)
        err.print(f"{pub}  fingerprint {key.fingerprint}; paste the line into your application")
