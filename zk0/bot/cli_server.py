"""`zk0bot server ...`: the admin's SuperLink, its enrolled nodes and its runs (wiring for
zk0.bot.server and zk0.bot.runs)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from zk0.bot import backup, runs, server, state, tunnel
from zk0.bot.cli_common import (
    BecomeOpt,
    CheckOpt,
    ConnOpt,
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
from zk0.bot.errors import BotError, ExitCode
from zk0.monitoring import headline

server_app = typer.Typer(help="The federation's SuperLink, its nodes and its runs (admin).", no_args_is_help=True)


@server_app.command("start")
@handled
def server_start(
    san: Annotated[list[str], typer.Option("--san", help="Name/IP nodes use to reach the SuperLink; repeatable.")] = [],  # noqa: B006
    port: Annotated[int | None, typer.Option("--port", help="The published TLS port [default: 8000].")] = None,
    address: Annotated[str, typer.Option("--address", help="HOST:PORT this machine uses [default: first SAN].")] = "",
    connection: ConnOpt = "",
    host: HostOpt = "",
    ssh_port: SshPortOpt = None,
    ssh_key: SshKeyOpt = None,
    image: ImageOpt = "",
    image_source: ImageSourceOpt = "",
    var: VarOpt = [],  # noqa: B006
    secrets_file: SecretsOpt = None,
    check: CheckOpt = False,
    verbose: VerboseOpt = False,
    ask_become_pass: BecomeOpt = False,
) -> None:
    """Provision the SuperLink with the server playbook (CA, TLS, enrolled nodes) and write the admin connection."""
    saved = server.load_settings()
    extra = extra_vars(saved.extra_vars if saved else None, var, "server.yml")
    s = server.merge(
        saved,
        sans=list(san),
        port=port,
        address=address,
        connection=connection,
        host=host,
        ssh_port=ssh_port,
        ssh_key=str(ssh_key) if ssh_key else "",
        image=image,
        image_source=image_source,
        extra_vars=extra,
        secrets_file=str(secrets_file.resolve()) if secrets_file else "",
    )
    if server.loopback_only(s.sans or ([s.target.name] if not s.target.local else ["localhost"])):
        err.print(
            "note: the SuperLink certificate will name only loopback names: nodes on other machines cannot "
            "verify it; add the name or IP they use, e.g. --san link.example.org"
        )
    secrets = run_secrets(s.secrets_file, ("WANDB_API_KEY",))
    with spinner(f"server playbook on {s.target.name}", verbose or ask_become_pass) as status:
        result, conn_file = server.start(
            s, secrets, check=check, ask_become_pass=ask_become_pass, verbose=verbose, status=status
        )
    report_playbook(result, check, "server playbook")
    if conn_file:
        ca = state.side_dir("server") / "pki" / "ca.pem"
        err.print(f"connection {s.connection!r} → {s.admin_address} written to {conn_file}")
        err.print(f"give node operators {ca} and the address {s.admin_address}")


def server_control(action: str, tail: int = 100, ask_become_pass: bool = False) -> dict:
    return compose_control(
        server.control, "server", "is the server set up? run `zk0bot server start`", action, tail, ask_become_pass
    )


@server_app.command("stop")
@handled
def server_stop(ask_become_pass: BecomeOpt = False) -> None:
    """Stop the SuperLink container (state database and outputs volumes are kept)."""
    server_control("stop", ask_become_pass=ask_become_pass)
    err.print("SuperLink stopped")


@server_app.command("status")
@handled
def server_status(as_json: Annotated[bool, typer.Option("--json")] = False, ask_become_pass: BecomeOpt = False) -> None:
    """Show the server stack's containers and the latest run's headline figures (nodes online,
    round, replies, losses, checkpoint age, from the monitor's metrics); exit 1 unless every
    container is running and healthy."""
    up = print_ps(server_control("status", ask_become_pass=ask_become_pass).get("stdout", ""), as_json)
    if not as_json:  # --json stays the containers alone, as `zk0bot status --json` gives them
        try:
            scraped = server_control("metrics", ask_become_pass=ask_become_pass).get("stdout", "")
            for line in headline.lines(headline.parse(scraped)):
                out.print(line, markup=False)
        except (BotError, ValueError) as err:  # a stopped monitor, or a page that is not an exposition
            out.print(f"figures: not available ({str(err).splitlines()[0][:200]})", markup=False)
    if not up:
        raise typer.Exit(int(ExitCode.FAILED))


@server_app.command("backup")
@handled
def server_backup(
    dest: Annotated[
        Path | None,
        typer.Option("--dest", help="Directory for the archive here [default: the state dir's server/backups]."),
    ] = None,
    host: HostOpt = "",
    ssh_port: SshPortOpt = None,
    ssh_key: SshKeyOpt = None,
    verbose: VerboseOpt = False,
    ask_become_pass: BecomeOpt = False,
) -> None:
    """Back up the server now (superlink.db by SQLite's online backup, the SuperLink's certificate and key, never
    ca.key, and the outputs with each run's latest checkpoint) and fetch the archive here; prints its path."""
    s = backup.target(host, ssh_port, ssh_key)
    with spinner(f"backup on {s.target.name}", verbose or ask_become_pass) as status:
        result, archive = backup.backup(s, dest or backup.default_dest(), ask_become_pass, verbose, status)
    report_playbook(result, False, "server backup")
    if archive is None:
        raise BotError("the backup ran but no archive arrived here", f"read the log: {result.log}")
    err.print(f"{archive.stat().st_size / 2**20:.1f} MiB; a copy stays on the server in its backup directory")
    out.print(str(archive), markup=False)


@server_app.command("restore")
@handled
def server_restore(
    archive: Annotated[Path, typer.Argument(help="A zk0 backup (.tar.gz) from `zk0bot server backup`.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before replacing the server's state.")] = False,
    host: HostOpt = "",
    ssh_port: SshPortOpt = None,
    ssh_key: SshKeyOpt = None,
    check: CheckOpt = False,
    verbose: VerboseOpt = False,
    ask_become_pass: BecomeOpt = False,
) -> None:
    """Restore a backup onto the server: stop the stack, put back the database (runs, registered node keys), the
    SuperLink's certificate and key and the outputs, check the database, start the stack."""
    manifest = backup.read_manifest(archive)
    s = backup.target(host, ssh_port, ssh_key)
    made = f"made {manifest.get('created', '?')} on {manifest.get('host', '?')}"
    if not (yes or check) and not typer.confirm(
        f"Replace the SuperLink database and certificate on {s.target.name} with {archive.name} ({made})?"
    ):
        raise BotError("restore not confirmed; nothing was changed", "answer y, or pass --yes", ExitCode.FAILED)
    with spinner(f"restore on {s.target.name}", verbose or ask_become_pass) as status:
        result = backup.restore(s, archive, check, ask_become_pass, verbose, status)
    report_playbook(result, check, "server restore")
    if not check:
        err.print(
            f"restored {archive.name} ({made}); now run `zk0bot server start` (it enrolls the listed nodes again "
            "and renews the certificate for this server's names)"
        )


# `log` is the same command as `logs` (a common slip), kept out of --help.
@server_app.command("logs")
@server_app.command("log", hidden=True)
@handled
def server_logs(tail: TailOpt = 100, ask_become_pass: BecomeOpt = False) -> None:
    """Print the server stack's last log lines (proxy, SuperLink, SuperExec with the ServerApps)."""
    out.print(server_control("logs", tail, ask_become_pass).get("stdout", ""), markup=False)


@contextlib.contextmanager
def admin_connection(given: str) -> Iterator[str]:
    """The admin connection's name, with an SSH tunnel to the server's admin listener when needed."""
    saved = server.load_settings()
    name = given or (saved.connection if saved else server.DEFAULT_CONNECTION)
    if saved is None or (given and given != saved.connection):
        yield name
        return
    with tunnel.admin_tunnel(saved.target, saved.admin_bind, saved.address, saved.admin_port) as how:
        err.print(how, style="dim")
        yield name


@server_app.command("enroll")
@handled
def server_enroll(
    public_key: Annotated[Path, typer.Argument(help="The node's supernode.key.pub (from its application).")],
    name: Annotated[str, typer.Option("--name", help="A name for the node, e.g. its operator's handle.")],
    connection: ConnOpt = "",
    no_register: Annotated[
        bool, typer.Option("--no-register", help="Only add it to the list (next start registers).")
    ] = False,
) -> None:
    """Enroll a node: add its key to the server's list and register it with the SuperLink (idempotent)."""
    with admin_connection(connection) as conn, spinner("enrolling"):
        lines = server.enroll(public_key, name, conn, register=not no_register)
    for line in lines:
        out.print(line)


@server_app.command("remove")
@handled
def server_remove(
    name: Annotated[str, typer.Argument(help="The enrolled node's name.")], connection: ConnOpt = ""
) -> None:
    """Remove a node: drop it from the list and unregister its key (it needs a new key to return)."""
    with admin_connection(connection) as conn:
        lines = server.remove(name, conn)
    for line in lines:
        out.print(line)


@server_app.command("nodes")
@handled
def server_nodes(connection: ConnOpt = "", as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List enrolled nodes with their SuperLink status (online, offline, registered)."""
    with admin_connection(connection) as conn:
        rows = server.node_table(conn)
    if as_json:
        out.print(json.dumps(rows, indent=1))
        return
    for r in rows:
        out.print(f"{r['name']:<20} {r['node_id']:>20}  {r['status']:<15} {r['fingerprint']}")


@server_app.command("run")
@handled
def server_run(
    rounds: Annotated[int | None, typer.Option("--rounds", min=1, help="num-server-rounds for this run.")] = None,
    run_config: Annotated[
        list[str], typer.Option("--run-config", help="k=v overrides or a TOML file; repeatable.")
    ] = [],  # noqa: B006
    connection: ConnOpt = "",
    app_path: Annotated[Path | None, typer.Option("--app", help="A zk0 checkout to build the app from.")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Submit a federated run with `flwr run --stream` and show per-round progress; exit 0 when it completed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    total = rounds or 0
    with (
        admin_connection(connection) as conn,
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        ) as progress,
    ):
        task = progress.add_task("submitting", total=total or None)

        reported = {-1}

        def on_progress(done: int, of: int | None) -> None:
            label = f"round {min(done + 1, of)}/{of}" if of else f"round {done + 1}"
            progress.update(task, total=of, completed=done, description=label)
            if not err.is_terminal and done not in reported:  # logs and scripts get one line per round
                reported.add(done)
                progress.console.print(f"rounds done: {done}/{of or '?'}")

        def on_line(line: str) -> None:
            if verbose:
                progress.console.print(line, markup=False)

        outcome = runs.submit(conn, rounds, list(run_config), app_path, on_line, on_progress)
        if outcome.status.endswith("completed"):
            progress.update(task, completed=progress.tasks[0].total or outcome.rounds_done, description="completed")
    if outcome.run_id is None:
        raise BotError(
            f"flwr run did not start a run (exit {outcome.rc})",
            "run with --verbose to see flwr's message; check `zk0bot doctor` and the connection",
            ExitCode.FAILED,
        )
    out.print(f"run {outcome.run_id}: {outcome.status or 'unknown'} after {outcome.rounds_done} round(s)")
    if not outcome.status.endswith("completed"):
        raise BotError(
            f"run {outcome.run_id} ended as {outcome.status or 'unknown'}",
            f"read the ServerApp log with `flwr log {outcome.run_id} {conn}` and `zk0bot server logs`",
        )
