"""`zk0 pki ...` and `zk0 node ...`: the federation's PKI and node enrollment from the shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from zk0.deploy import admin_auth, enrollment, pki

pki_app = typer.Typer(
    help="Federation PKI: CA, SuperLink TLS certificate, node auth keys.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
node_app = typer.Typer(help="Enroll SuperNodes: register, list, unregister public keys.", no_args_is_help=True)

DirOpt = Annotated[Path, typer.Option("--dir", help="Directory for the files (created).")]
ConnOpt = Annotated[str, typer.Option("--superlink", help="Connection name in $FLWR_HOME/config.toml.")]


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(1)


def _report(report: pki.Report) -> None:
    """Kept keys on stdout; keys others could read (now tightened) as warnings on stderr."""
    for note in report.notes:
        typer.echo(note)
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)


@pki_app.command("ca")
def ca(directory: DirOpt, common_name: str = "zk0 federation CA") -> None:
    """Create the federation CA (ca.pem, ca.key 0600); an existing one is kept."""
    try:
        files = pki.create_ca(directory, common_name)
    except pki.PKIError as err:
        _fail(err)
    _report(files.report)
    typer.echo(f"CA certificate: {files.cert}\nCA key (keep offline, 0600): {files.key}")


@pki_app.command("superlink-cert")
def superlink_cert(
    directory: DirOpt,
    san: Annotated[
        list[str], typer.Option("--san", help="DNS name or IP the SuperLink is reached at; repeatable.")
    ] = [],  # noqa: B006
    ca_dir: Annotated[
        Path | None, typer.Option("--ca-dir", help="Directory of ca.pem/ca.key (default: --dir).")
    ] = None,
) -> None:
    """Issue the SuperLink TLS certificate; 127.0.0.1, localhost and superlink are always included."""
    from zk0 import validate

    for value in san:
        try:
            validate.parse_san(value, "--san")
        except ValueError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
    if all(validate.is_loopback(value.strip()) for value in san):
        typer.echo(
            "warning: no --san that nodes on other machines can use: the certificate names only 127.0.0.1, "
            "localhost and superlink, so only this machine can verify it; add the DNS name or IP nodes dial, "
            "e.g. --san link.example.org --san 203.0.113.7",
            err=True,
        )
    try:
        files = pki.create_superlink_cert(directory, list(san), ca_dir)
    except pki.PKIError as err:
        _fail(err)
    sans = sorted(pki.cert_sans(pki.load_cert(files.cert)))
    _report(files.report)
    typer.echo(f"SuperLink certificate: {files.cert} (SANs: {', '.join(sans)})\nkey: {files.key}")


@pki_app.command("node-key")
def node_key(directory: DirOpt, comment: str = "zk0-supernode") -> None:
    """Create this node's ECDSA P-384 auth key pair (supernode.key 0600, supernode.pub)."""
    try:
        files = pki.create_node_key(directory, comment)
    except pki.PKIError as err:
        _fail(err)
    _report(files.report)
    typer.echo(
        f"private key (stays on this node): {files.private_key}\npublic key (send to the admin): {files.public_key}"
    )


@node_app.command("register")
def register(public_key: Path, superlink: ConnOpt) -> None:
    """Register a node's public key; exit 0 with "already registered" when it is."""
    try:
        outcome = enrollment.register(public_key, superlink)
    except enrollment.EnrollmentError as err:
        _fail(err)
    typer.echo(outcome.message)


@node_app.command("unregister")
def unregister(node: Annotated[str, typer.Argument(help="Public key file or node id.")], superlink: ConnOpt) -> None:
    """Unregister a node; exit 0 with "not registered" when it is not."""
    try:
        outcome = enrollment.unregister(node, superlink)
    except enrollment.EnrollmentError as err:
        _fail(err)
    typer.echo(outcome.message)


@node_app.command("list")
def list_nodes(superlink: ConnOpt, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List nodes with status and public-key fingerprint."""
    try:
        nodes = enrollment.list_nodes(superlink)
    except enrollment.EnrollmentError as err:
        _fail(err)
    if as_json:
        typer.echo(
            json.dumps(
                [{"node-id": str(n.node_id), "status": n.status, "fingerprint": n.fingerprint} for n in nodes], indent=1
            )
        )
        return
    for n in nodes:
        typer.echo(f"{n.node_id:>20}  {n.status:<12}  {n.fingerprint}")


admin_app = typer.Typer(
    help="The admin's access to the Control API (the proxy's admin listener).", no_args_is_help=True
)


@admin_app.command("token")
def admin_token(
    path: Annotated[Path, typer.Argument(help="Token file to create (0600); kept when it exists.")],
) -> None:
    """Make the admin token the proxy checks (32 random bytes, hex); the superlink role does this too."""
    try:
        _, created = admin_auth.write_token(path)
    except (admin_auth.AdminAuthError, OSError) as err:
        _fail(err)
    typer.echo(f"{'created' if created else 'kept the existing'} admin token {path} (0600; never print or commit it)")


@admin_app.command("login")
def admin_login(
    superlink: ConnOpt,
    token_file: Annotated[Path, typer.Option("--token-file", help="The admin token (pki/admin.token).")],
) -> None:
    """Store the admin token where the `flwr` CLI sends it from, for one connection."""
    try:
        path = admin_auth.login(superlink, admin_auth.read_token(token_file))
    except admin_auth.AdminAuthError as err:
        _fail(err)
    typer.echo(f"flwr now sends the admin token to connection {superlink!r} (stored in {path}, 0600)")
