"""`zk0bot client ...`: a node operator's SuperNode (wiring for zk0.bot.client)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zk0.bot import client
from zk0.bot.cli_common import (
    BecomeOpt,
    CheckOpt,
    HostOpt,
    ImageOpt,
    ImageSourceOpt,
    SecretsOpt,
    SshKeyOpt,
    SshPortOpt,
    TailOpt,
    VarOpt,
    VerboseOpt,
    compose_control,
    err,
    extra_vars,
    handled,
    out,
    print_ps,
    report_playbook,
    run_secrets,
    spinner,
)
from zk0.bot.errors import ExitCode

client_app = typer.Typer(help="This node's SuperNode (the client playbook).", no_args_is_help=True)


@client_app.command("start")
@handled
def client_start(
    dataset: Annotated[str, typer.Option("--dataset", help="local:/abs/path or hf:owner/name[@rev].")] = "",
    superlink: Annotated[str, typer.Option("--superlink", help="HOST:PORT the admin gave you.")] = "",
    ca: Annotated[Path | None, typer.Option("--ca", help="The federation's ca.pem from the admin.")] = None,
    host: HostOpt = "",
    ssh_port: SshPortOpt = None,
    ssh_key: SshKeyOpt = None,
    image: ImageOpt = "",
    image_source: ImageSourceOpt = "",
    gpu: Annotated[bool | None, typer.Option("--gpu/--no-gpu", help="Reserve NVIDIA GPUs [default: detect].")] = None,
    var: VarOpt = [],  # noqa: B006
    no_start: Annotated[
        bool, typer.Option("--no-start", help="Prepare and make the key only (before enrollment).")
    ] = False,
    secrets_file: SecretsOpt = None,
    check: CheckOpt = False,
    verbose: VerboseOpt = False,
    ask_become_pass: BecomeOpt = False,
) -> None:
    """Set up this machine (or --host) as a zk0 node with the client playbook and start its SuperNode."""
    saved = client.load_settings()
    extra = extra_vars(saved.extra_vars if saved else None, var, "client.yml")
    s = client.merge(
        saved,
        dataset=dataset,
        superlink=superlink,
        ca=str(ca.resolve()) if ca else "",
        host=host,
        ssh_port=ssh_port,
        ssh_key=str(ssh_key) if ssh_key else "",
        image=image,
        image_source=image_source,
        gpu=gpu,
        extra_vars=extra,
        secrets_file=str(secrets_file.resolve()) if secrets_file else "",
    )
    secrets = run_secrets(s.secrets_file, ("HF_TOKEN", "WANDB_API_KEY"))
    with spinner(f"client playbook on {s.target.name}", verbose or ask_become_pass) as status:
        result, pub = client.start(
            s,
            secrets,
            start_stack=not no_start,
            check=check,
            ask_become_pass=ask_become_pass,
            verbose=verbose,
            status=status,
        )
    report_playbook(result, check, "client playbook")
    if check:
        return
    if pub.exists():
        err.print(f"node public key (send it with your application): {pub}")
        out.print(pub.read_text().strip())
    if no_start:
        err.print("not started (--no-start); once the admin registered your key run `zk0bot client start` again")
    else:
        err.print("SuperNode running; check it with `zk0bot client status`")


def client_control(action: str, tail: int = 100, ask_become_pass: bool = False) -> dict:
    return compose_control(
        client.control,
        "node",
        "is the client set up? run `zk0bot client start` (or `zk0bot doctor`)",
        action,
        tail,
        ask_become_pass,
    )


@client_app.command("stop")
@handled
def client_stop(ask_become_pass: BecomeOpt = False) -> None:
    """Stop and remove the SuperNode container (its state volume is kept)."""
    client_control("stop", ask_become_pass=ask_become_pass)
    err.print("SuperNode stopped")


@client_app.command("status")
@handled
def client_status(
    as_json: Annotated[bool, typer.Option("--json", help="docker compose ps as JSON.")] = False,
    ask_become_pass: BecomeOpt = False,
) -> None:
    """Show the SuperNode container's state and health; exit 1 when it is not running and healthy."""
    if not print_ps(client_control("status", ask_become_pass=ask_become_pass).get("stdout", ""), as_json):
        raise typer.Exit(int(ExitCode.FAILED))


# `log` is the same command as `logs` (a common slip), kept out of --help.
@client_app.command("logs")
@client_app.command("log", hidden=True)
@handled
def client_logs(tail: TailOpt = 100, ask_become_pass: BecomeOpt = False) -> None:
    """Print the SuperNode's last log lines (training progress and errors stay on the node)."""
    out.print(client_control("logs", tail, ask_become_pass).get("stdout", ""), markup=False)
