"""`zk0bot`: the front door for node operators and the federation admin.

Wiring only: each command parses options, calls its module (client, server, runs, keys,
doctor) and renders the outcome. Results go to stdout; spinners, progress and errors to
stderr, so ``zk0bot keys show > node.pub`` and ``zk0bot server nodes --json`` pipe cleanly.
Errors are one sentence with the fix, and the exit code says what kind of failure it was
(zk0.bot.errors.ExitCode). Saved settings and logs: ``$ZK0BOT_HOME`` (zk0.bot.state).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from zk0.bot import client, doctor, keys, playbook, runs, server, state, tunnel
from zk0.bot.errors import BotError, ExitCode

app = typer.Typer(
    name="zk0bot",
    help="zk0bot: run a zk0 node or the federation server.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
client_app = typer.Typer(help="This node's SuperNode (the client playbook).", no_args_is_help=True)
server_app = typer.Typer(help="The federation's SuperLink, its nodes and its runs (admin).", no_args_is_help=True)
keys_app = typer.Typer(help="This node's authentication key.", no_args_is_help=True)
app.add_typer(client_app, name="client")
app.add_typer(server_app, name="server")
app.add_typer(keys_app, name="keys")

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
    typer.Option("--secrets-file", help="0600 file with HF_TOKEN= / WANDB_API_KEY= lines (else from the environment)."),
]
TailOpt = Annotated[int, typer.Option("--tail", min=1, help="Log lines to show.")]
ConnOpt = Annotated[str, typer.Option("--connection", help="flwr connection name in $FLWR_HOME/config.toml.")]


def _report_playbook(result: playbook.PlaybookResult, check: bool, what: str) -> None:
    counts = {k: sum(r.get(k, 0) for r in result.recap.values()) for k in ("ok", "changed", "failed", "unreachable")}
    summary = f"{len(result.tasks)} tasks, {counts['changed']} {'would change' if check else 'changed'}"
    if not result.ok:
        problem = f"{what} failed ({summary}): {result.problem}"
        raise BotError(problem, f"fix what the message names, then run the command again; full log: {result.log}")
    err.print(f"{what}{' (check mode)' if check else ''}: ok, {summary}; log: {result.log}")


def _secrets(secrets_file: str, used: tuple[str, ...]) -> dict[str, str]:
    """Secrets for this run; say so when there are none, since the role then writes an empty
    secrets file on the host (a token given on an earlier run is not kept)."""
    found = state.read_secrets(Path(secrets_file) if secrets_file else None)
    missing = [name for name in used if name not in found]
    if missing:
        err.print(f"note: no {' or '.join(missing)} (environment or --secrets-file): the host runs without it")
    return found


def _extra_vars(saved: dict[str, object] | None, given: list[str], book: str) -> dict[str, object]:
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


def _spinner(text: str, quiet: bool = False):
    """A spinner on stderr; none when output is streamed or a password prompt must stay readable."""
    return contextlib.nullcontext() if quiet else err.status(text, spinner="dots")


# ---------------------------------------------------------------- client
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
    extra = _extra_vars(saved.extra_vars if saved else None, var, "client.yml")
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
    secrets = _secrets(s.secrets_file, ("HF_TOKEN", "WANDB_API_KEY"))
    with _spinner(f"client playbook on {s.target.name}", verbose or ask_become_pass) as status:
        result, pub = client.start(
            s,
            secrets,
            start_stack=not no_start,
            check=check,
            ask_become_pass=ask_become_pass,
            verbose=verbose,
            status=status,
        )
    _report_playbook(result, check, "client playbook")
    if check:
        return
    if pub.exists():
        err.print(f"node public key (send it with your application): {pub}")
        out.print(pub.read_text().strip())
    if no_start:
        err.print("not started (--no-start); once the admin registered your key run `zk0bot client start` again")
    else:
        err.print("SuperNode running; check it with `zk0bot client status`")


def _control(side, where: str, fix: str, action: str, tail: int, ask_become_pass: bool) -> dict:
    """`docker compose <action>` on the node or the server (`side` is the client or server module)."""
    with _spinner(f"{action} on the {where}", ask_become_pass):
        result = side.control(action, tail=tail, ask_become_pass=ask_become_pass)
    if result.get("rc") != 0:  # ansible reports a command it could not start without rc
        raise BotError(
            f"docker compose {action} failed on the {where}: {(result.get('stderr') or result.get('msg', ''))[-400:]}",
            fix,
        )
    return result


def _client_control(action: str, tail: int = 100, ask_become_pass: bool = False) -> dict:
    return _control(
        client,
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
    _client_control("stop", ask_become_pass=ask_become_pass)
    err.print("SuperNode stopped")


def _print_ps(stdout: str, as_json: bool) -> bool:
    rows = client.parse_ps(stdout)
    if as_json:
        out.print(json.dumps(rows, indent=1))
    elif not rows:
        out.print("not running (no container)")
    for r in [] if as_json else rows:
        out.print(f"{r.get('Service', '?')}: {r.get('State', '?')} {r.get('Health') or ''} ({r.get('Status', '')})")
    # Every container of the stack (the server has three) must be up for the stack to be.
    return bool(rows) and all(r.get("State") == "running" and r.get("Health") in ("healthy", "") for r in rows)


@client_app.command("status")
@handled
def client_status(
    as_json: Annotated[bool, typer.Option("--json", help="docker compose ps as JSON.")] = False,
    ask_become_pass: BecomeOpt = False,
) -> None:
    """Show the SuperNode container's state and health; exit 1 when it is not running and healthy."""
    if not _print_ps(_client_control("status", ask_become_pass=ask_become_pass).get("stdout", ""), as_json):
        raise typer.Exit(int(ExitCode.FAILED))


@client_app.command("logs")
@handled
def client_logs(tail: TailOpt = 100, ask_become_pass: BecomeOpt = False) -> None:
    """Print the SuperNode's last log lines (training progress and errors stay on the node)."""
    out.print(_client_control("logs", tail, ask_become_pass).get("stdout", ""), markup=False)


# ---------------------------------------------------------------- server
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
    extra = _extra_vars(saved.extra_vars if saved else None, var, "server.yml")
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
    secrets = _secrets(s.secrets_file, ("WANDB_API_KEY",))
    with _spinner(f"server playbook on {s.target.name}", verbose or ask_become_pass) as status:
        result, conn_file = server.start(
            s, secrets, check=check, ask_become_pass=ask_become_pass, verbose=verbose, status=status
        )
    _report_playbook(result, check, "server playbook")
    if conn_file:
        ca = state.side_dir("server") / "pki" / "ca.pem"
        err.print(f"connection {s.connection!r} → {s.admin_address} written to {conn_file}")
        err.print(f"give node operators {ca} and the address {s.admin_address}")


def _server_control(action: str, tail: int = 100, ask_become_pass: bool = False) -> dict:
    return _control(server, "server", "is the server set up? run `zk0bot server start`", action, tail, ask_become_pass)


@server_app.command("stop")
@handled
def server_stop(ask_become_pass: BecomeOpt = False) -> None:
    """Stop the SuperLink container (state database and outputs volumes are kept)."""
    _server_control("stop", ask_become_pass=ask_become_pass)
    err.print("SuperLink stopped")


@server_app.command("status")
@handled
def server_status(as_json: Annotated[bool, typer.Option("--json")] = False, ask_become_pass: BecomeOpt = False) -> None:
    """Show the server stack's containers (proxy, SuperLink, SuperExec); exit 1 unless all are running and healthy."""
    if not _print_ps(_server_control("status", ask_become_pass=ask_become_pass).get("stdout", ""), as_json):
        raise typer.Exit(int(ExitCode.FAILED))


@server_app.command("logs")
@handled
def server_logs(tail: TailOpt = 100, ask_become_pass: BecomeOpt = False) -> None:
    """Print the server stack's last log lines (proxy, SuperLink, SuperExec with the ServerApps)."""
    out.print(_server_control("logs", tail, ask_become_pass).get("stdout", ""), markup=False)


@contextlib.contextmanager
def _admin(given: str) -> Iterator[str]:
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
    with _admin(connection) as conn, _spinner("enrolling"):
        lines = server.enroll(public_key, name, conn, register=not no_register)
    for line in lines:
        out.print(line)


@server_app.command("remove")
@handled
def server_remove(
    name: Annotated[str, typer.Argument(help="The enrolled node's name.")], connection: ConnOpt = ""
) -> None:
    """Remove a node: drop it from the list and unregister its key (it needs a new key to return)."""
    with _admin(connection) as conn:
        lines = server.remove(name, conn)
    for line in lines:
        out.print(line)


@server_app.command("nodes")
@handled
def server_nodes(connection: ConnOpt = "", as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List enrolled nodes with their SuperLink status (online, offline, registered)."""
    with _admin(connection) as conn:
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
        _admin(connection) as conn,
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


# ---------------------------------------------------------------- keys, doctor, paths
PkiOpt = Annotated[Path, typer.Option("--pki-dir", help="Directory of the node key pair.")]


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
        extra_vars=_extra_vars(saved.extra_vars if saved else None, var, str(client.NODE_KEY_PLAYBOOK)),
    )
    with _spinner(f"node key on {s.target.name}", verbose or ask_become_pass) as status:
        result, pub = client.create_key(s, check=check, ask_become_pass=ask_become_pass, verbose=verbose, status=status)
    _report_playbook(result, check, "node key")
    if not check:
        key = keys.show(path=pub)
        out.print(key.line, markup=False)
        err.print(f"{pub}  fingerprint {key.fingerprint}; paste the line into your application")


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
    with _spinner("checking"):
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
