"""`zk0 monitor ...`: the federation server's Prometheus endpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

monitor_app = typer.Typer(
    help="Prometheus metrics of the federation server (runs, rounds, nodes).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@monitor_app.command("serve")
def serve(
    outputs: Annotated[
        Path, typer.Option(help="The ServerApp's output directory (its run directories with metrics/round_N.json).")
    ],
    superlink_db: Annotated[Path, typer.Option(help="The SuperLink's --database file (opened read-only).")],
    listen: Annotated[
        str, typer.Option(help="HOST:PORT to serve /metrics on; only that address is bound.")
    ] = "127.0.0.1:9400",
) -> None:
    """Serve the latest run's figures and the SuperLink's node counts at http://HOST:PORT/metrics."""
    from zk0.logs import setup_logging
    from zk0.monitoring.server_metrics import ServerMetricsCollector, start_metrics_server
    from zk0.validate import parse_hostport

    try:
        host, port = parse_hostport(listen, "--listen")
    except ValueError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(2) from None
    setup_logging()
    if not outputs.is_dir():  # an empty volume before the first run is fine; a typo is not obvious
        logging.getLogger("zk0.monitor").warning(
            "outputs directory %s does not exist (yet): run figures appear once a run writes there", outputs
        )
    collector = ServerMetricsCollector(outputs, superlink_db)
    try:
        server, thread = start_metrics_server(collector, host, port)
    except OSError as err:
        typer.secho(f"error: {err.strerror or err}", fg="red", err=True)
        raise typer.Exit(1) from None
    shown = f"[{host}]" if ":" in host else host
    bound_port = server.socket.getsockname()[1]
    typer.echo(f"serving zk0 server metrics on http://{shown}:{bound_port}/metrics (only this address)")
    try:
        thread.join()  # the server thread runs until the process is stopped (SIGTERM ends it too)
    except KeyboardInterrupt:
        server.shutdown()


@monitor_app.command("eval-label")
def eval_label(
    uris: Annotated[list[str], typer.Argument(help="Server eval dataset URIs, as in server-eval-datasets.")],
) -> None:
    """Print the label zk0_server_eval_loss uses for each server eval dataset."""
    from zk0.privacy import server_eval_label

    for uri in uris:
        typer.echo(f"{server_eval_label(uri)}  {uri}")
