"""The `zk0` command: local tooling for datasets, models and the federation's PKI."""

from __future__ import annotations

import typer

app = typer.Typer(help="zk0: federated SmolVLA training tools.", no_args_is_help=True)
