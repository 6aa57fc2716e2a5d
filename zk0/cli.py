"""The `zk0` command: local tooling for datasets, models and the federation's PKI."""

from __future__ import annotations

import typer

app = typer.Typer(help="zk0: federated SmolVLA training tools.", no_args_is_help=True)

from zk0.deploy.cli import node_app, pki_app  # noqa: E402

app.add_typer(pki_app, name="pki")
app.add_typer(node_app, name="node")
