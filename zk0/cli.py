"""The `zk0` command: local tooling for datasets, models, simulation, the federation's PKI and the server's metrics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from zk0.deploy.cli import admin_app, node_app, pki_app
from zk0.monitoring.monitor_cli import monitor_app

# An unexpected error prints a short traceback without local variables: those held HF_TOKEN
# (in request headers), and the client container runs `zk0 dataset check` at every start.
QUIET_ERRORS: dict[str, Any] = {"pretty_exceptions_show_locals": False, "pretty_exceptions_short": True}

app = typer.Typer(help="zk0: federated SmolVLA training tools.", no_args_is_help=True, **QUIET_ERRORS)
dataset_app = typer.Typer(help="Datasets for nodes and the server.", no_args_is_help=True, **QUIET_ERRORS)
model_app = typer.Typer(help="Model backbones built locally (no Hub access).", no_args_is_help=True, **QUIET_ERRORS)
sim_app = typer.Typer(
    help="The local simulation SuperLink behind `flwr run . local-sim`.", no_args_is_help=True, **QUIET_ERRORS
)
app_app = typer.Typer(
    help="The app bundle (FAB) that `flwr run` sends to the nodes.", no_args_is_help=True, **QUIET_ERRORS
)

app.add_typer(dataset_app, name="dataset")
app.add_typer(model_app, name="model")
app.add_typer(sim_app, name="sim")
app.add_typer(app_app, name="app")
app.add_typer(pki_app, name="pki")
app.add_typer(node_app, name="node")
app.add_typer(admin_app, name="admin")
app.add_typer(monitor_app, name="monitor")


SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")


def redact(text: str) -> str:
    """`text` with the value of every secret in the environment replaced by its name."""
    for name, value in os.environ.items():
        secret = name in SECRET_ENV or name.endswith(("_TOKEN", "_API_KEY", "_SECRET", "_PASSWORD"))
        if secret and len(value) >= 8:
            text = text.replace(value, f"<{name}>")
    return text


def _error(message: str, code: int = 1) -> typer.Exit:
    """Print one `error: ...` line (secrets redacted); raise the Exit it returns."""
    typer.secho(f"error: {redact(message)}", fg="red", err=True)
    return typer.Exit(code)


def _print_version(value: bool) -> None:
    if value:
        from zk0 import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """zk0: federated SmolVLA training tools."""


@dataset_app.command("synth")
def dataset_synth(
    out: Annotated[Path, typer.Option(help="Directory to write the dataset into.")],
    episodes: Annotated[int, typer.Option(min=2)] = 8,
    frames: Annotated[int, typer.Option(help="Frames per episode.", min=12)] = 40,
    seed: int = 0,
    video: Annotated[
        bool, typer.Option(help="As lerobot-record stores an SO-100: front and wrist cameras as AV1 video.")
    ] = False,
    resolution: Annotated[str, typer.Option(help="Camera frames as HEIGHTxWIDTH, e.g. 480x640.")] = "48x64",
    overwrite: bool = False,
) -> None:
    """Write a synthetic SO-100-style LeRobotDataset (v3.0) with a learnable signal."""
    from zk0.data.synthetic import SyntheticDatasetConfig, parse_resolution, write_synthetic_dataset

    try:
        height, width = parse_resolution(resolution)
        options: dict[str, Any] = {"episodes": episodes, "frames_per_episode": frames, "seed": seed}
        options |= {"image_height": height, "image_width": width}
        cfg = SyntheticDatasetConfig.recording(**options) if video else SyntheticDatasetConfig(**options)
    except ValueError as err:
        raise _error(str(err), code=2) from None
    try:
        root = write_synthetic_dataset(out.absolute(), cfg, overwrite=overwrite)
    except FileExistsError as err:
        raise _error(str(err).replace("overwrite=True (--overwrite)", "--overwrite")) from None
    except OSError as err:
        where = out.absolute()
        raise _error(
            f"cannot write the dataset to {where} ({err.strerror or err}): choose a directory you can write"
        ) from None
    typer.echo(f"wrote {episodes} episodes to {root}; use it as dataset-uri=local:{root}")


@dataset_app.command("check")
def dataset_check(uri: Annotated[str, typer.Argument(help="local:/abs/path or hf:owner/name[@rev]")]) -> None:
    """Check a dataset against the SO-100/101 schema, as a node does before training."""
    from zk0.data.cameras import map_cameras
    from zk0.data.loading import open_metadata

    try:
        meta = open_metadata(uri)
        cameras = map_cameras(meta.features, uri)  # which camera feeds which image input, or a refusal
    except ValueError as err:  # the dataset's own problems, each named with its fix
        raise _error(str(err)) from None
    except Exception as err:  # never a traceback: its local variables can hold HF_TOKEN
        first = str(err).splitlines()[0] if str(err) else "no detail"
        raise _error(
            f"could not check dataset {uri} ({type(err).__name__}: {first}); fix what it names, retry"
        ) from err
    typer.echo(
        f"ok: {meta.total_episodes} episodes, {meta.total_frames} frames at {meta.fps} fps; "
        f"cameras {cameras.describe()}"
    )


@dataset_app.command("convert")
def dataset_convert(
    uri: Annotated[str, typer.Argument(help="local:/abs/path of a LeRobot v2.1 dataset")],
    output: Annotated[
        Path | None, typer.Option(help="Where the v3.0 dataset goes (default: beside it, as NAME_v30).")
    ] = None,
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Convert the dataset where it is; the original is kept as NAME_old.")
    ] = False,
) -> None:
    """Convert a LeRobot v2.1 dataset to v3.0 with lerobot's converter (on a copy, offline), then check it."""
    from zk0.data.convert import ConvertConfig, ConvertError, convert_dataset
    from zk0.data.schema import DatasetSchemaError
    from zk0.data.uri import DatasetURIError

    try:
        cfg = ConvertConfig.from_uri(uri, output=output, in_place=in_place)
    except ConvertError as err:
        raise _error(str(err), code=2) from None
    try:
        result = convert_dataset(cfg)
    except ConvertError as err:  # the input or the output: nothing was written
        raise _error(str(err), code=2) from None
    except (DatasetURIError, DatasetSchemaError) as err:  # converted, but fails the check; it stays for a look
        raise _error(f"converted to {cfg.destination}, but: {err}") from None
    except Exception as err:  # never a traceback: its local variables can hold HF_TOKEN
        first = str(err).splitlines()[0] if str(err) else "no detail"
        original = (
            f"{cfg.source}_old (if lerobot moved it) or {cfg.source}" if cfg.in_place else f"{cfg.source}, unchanged"
        )
        raise _error(
            f"lerobot could not convert {uri} ({type(err).__name__}: {first}); the v2.1 original is at {original}"
        ) from err
    kept = "unchanged" if result.original == cfg.source else f"kept at {result.original}"
    typer.echo(
        f"ok: converted to LeRobot v3.0 at {result.root} ({result.episodes} episodes, {result.frames} frames); "
        f"the v2.1 original is {kept}. Use dataset-uri=local:{result.root}"
    )


@model_app.command("tiny")
def model_tiny(
    out: Annotated[Path, typer.Option(help="Directory for the backbone files.")],
    preset: Annotated[str, typer.Option(help="tiny or smolvlm2-500m")] = "tiny",
) -> None:
    """Write a SmolVLM backbone dir (config, tokenizer, processor) for building SmolVLA offline."""
    from zk0.model.backbone import BACKBONES, write_backbone

    if preset not in BACKBONES:
        typer.secho(f"error: unknown preset {preset!r}; choose {', '.join(BACKBONES)}", fg="red", err=True)
        raise typer.Exit(2)
    typer.echo(str(write_backbone(BACKBONES[preset], out.absolute())))


@sim_app.command("start")
def sim_start(
    num_supernodes: Annotated[int, typer.Option(min=1)] = 2,
    cpus_per_node: Annotated[int, typer.Option(help="CPU cores each virtual node reserves.", min=1)] = 1,
    gpus_per_node: Annotated[float, typer.Option(help="Share of a GPU per virtual node, e.g. 0.5.", min=0)] = 0.0,
    connection: str = "local-sim",
) -> None:
    """Start the simulation SuperLink (once), write the `local-sim` connection, set the nodes."""
    from zk0.simulation import configure_simulation, start_sim_superlink, write_sim_connection

    path = write_sim_connection(connection)
    pid = start_sim_superlink()
    configure_simulation(connection, num_supernodes, cpus_per_node, gpus_per_node)
    state = f"started (pid {pid})" if pid else "already running"
    nodes = f"{num_supernodes} virtual nodes x {cpus_per_node} CPU, {gpus_per_node} GPU"
    typer.echo(f"simulation SuperLink {state}; connection '{connection}' in {path}; {nodes}")
    typer.echo(f"now: flwr run . {connection} --stream")


@sim_app.command("stop")
def sim_stop() -> None:
    """Stop the simulation SuperLink started by `zk0 sim start`."""
    from zk0.simulation import stop_sim_superlink

    typer.echo("stopped" if stop_sim_superlink() else "no simulation SuperLink was running")


@app_app.command("hash")
def app_hash(
    path: Annotated[Path, typer.Argument(help="An app directory (as given to `flwr run`) or a .fab file.")] = Path(),
) -> None:
    """Print the SHA-256 a node sees for `flwr run PATH`: the value its allowlist must hold."""
    from zk0.supernode.trust import app_hash as compute

    if not path.exists():
        typer.secho(f"error: {path} does not exist", fg="red", err=True)
        raise typer.Exit(2)
    try:
        typer.echo(compute(path))
    except (ValueError, OSError) as err:  # not a Flower app (no pyproject.toml, invalid config)
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
