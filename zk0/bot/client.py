"""`zk0bot client ...`: a node operator's SuperNode, set up by the real client playbook.

``client start`` turns a few options into the supernode role's variables
(roles/supernode/meta/argument_specs.yml), writes a one-host inventory (this machine, or
``--host user@addr`` over SSH) and runs ``playbooks/client.yml`` (docker, nvidia, tailscale,
supernode roles; tailscale only when a TAILSCALE_AUTH_KEY is given). The options are saved
(no secrets) so that a second ``client start`` (after the admin registered the key) and
``stop|status|logs`` need none of them again.

Dataset mapping: ``local:/srv/my-dataset`` becomes the role's ``supernode_dataset_dir``
(mounted read-only) with ``supernode_dataset_uri=local:/data/dataset`` inside the
container; ``hf:owner/name[@rev]`` is passed through. The CA file is read here and handed
to the role as PEM text (``supernode_ca_cert``), so it works the same for a remote host.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from zk0 import __version__, release, validate
from zk0.bot import playbook, state
from zk0.bot.errors import BotError, ExitCode
from zk0.bot.state import save_json, side_dir

DEFAULT_IMAGE = f"{release.image_repository()}:{__version__}"  # what the publish workflow pushes
GROUP = "zk0_clients"
SERVICE = "supernode"


@dataclass
class ClientSettings:
    dataset: str = ""
    superlink: str = ""
    ca: str = ""
    image: str = DEFAULT_IMAGE
    image_source: str = "pull"
    host: str = ""
    ssh_port: int | None = None
    ssh_key: str = ""
    config_dir: str = "/etc/zk0/client"
    pki_dir: str = "/etc/zk0/client/pki"
    stack_name: str = "zk0-client"
    gpu: bool | None = None  # None: what the nvidia role detects
    wandb_mode: str = "offline"
    secrets_file: str = ""  # the path only: read again on every start, never copied
    extra_vars: dict[str, object] = field(default_factory=dict)

    @property
    def target(self) -> playbook.Target:
        return playbook.Target(self.host, self.ssh_port, Path(self.ssh_key) if self.ssh_key else None)


def settings_path(base: Path | None = None) -> Path:
    return side_dir("client", base) / "settings.json"


def load_settings(base: Path | None = None) -> ClientSettings | None:
    return state.load_settings(ClientSettings, settings_path(base))


def merge(saved: ClientSettings | None, **given: object) -> ClientSettings:
    """Options given now win; the rest come from the saved settings, then the defaults."""
    return state.merge_settings(ClientSettings, saved, given)


def dataset_vars(dataset: str, local_target: bool) -> dict[str, str]:
    """``local:/abs/dir`` → host dir mounted at /data/dataset; ``hf:owner/name[@rev]`` as is.

    The URI is parsed by zk0's own parser (zk0.data.uri, through zk0.validate)."""
    try:
        uri = validate.parse_dataset_uri(dataset)
    except validate.DatasetURIError as err:
        raise BotError(
            f"--dataset: {err}", "pass e.g. --dataset local:/srv/so100 or --dataset hf:owner/name@main", ExitCode.USAGE
        ) from None
    if uri.is_local:
        path = str(uri.path)
        if local_target and not Path(path).is_dir():
            raise BotError(
                f"Dataset directory {path} does not exist on this machine",
                "point --dataset at a LeRobot dataset (check it with `zk0 dataset check`)",
                ExitCode.NOT_FOUND,
            )
        return {"supernode_dataset_uri": "local:/data/dataset", "supernode_dataset_dir": path}
    return {"supernode_dataset_uri": dataset.strip(), "supernode_dataset_dir": ""}


def group_vars(s: ClientSettings, fetch_dir: Path, start: bool, tailscale: bool = False) -> dict[str, object]:
    """The supernode role's variables (no secrets); ``tailscale``: a Tailscale auth key was given."""
    missing = [
        name for name, value in (("--dataset", s.dataset), ("--superlink", s.superlink), ("--ca", s.ca)) if not value
    ]
    if missing:
        raise BotError(
            f"client start needs {', '.join(missing)} (nothing saved from an earlier start)",
            "pass them once, e.g. --dataset local:/data/so100 --superlink link.example.org:8000 --ca ca.pem",
            ExitCode.USAGE,
        )
    try:
        validate.parse_hostport(s.superlink, "--superlink")
    except ValueError as err:
        raise BotError(
            str(err), "pass the address the admin gave you, e.g. --superlink link.example.org:8000", ExitCode.USAGE
        ) from None
    ca = Path(s.ca).expanduser()
    if not ca.is_file():
        raise BotError(
            f"CA certificate {ca} does not exist",
            "save the ca.pem the admin sent you and pass its path",
            ExitCode.NOT_FOUND,
        )
    pem = ca.read_text(encoding="utf-8")
    if "BEGIN CERTIFICATE" not in pem:
        raise BotError(f"{ca} is not a PEM certificate", "pass the federation's ca.pem", ExitCode.USAGE)
    gv: dict[str, object] = {
        "supernode_image": s.image,
        "supernode_image_source": s.image_source,
        "supernode_superlink_address": s.superlink,
        "supernode_ca_cert": pem,
        "supernode_config_dir": s.config_dir,
        "supernode_pki_dir": s.pki_dir,
        "supernode_stack_name": s.stack_name,
        "supernode_public_key_fetch_dir": str(fetch_dir),
        "supernode_wandb_mode": s.wandb_mode,
        "supernode_start": start,
        # The tailscale role runs when its auth key is given (a `--var tailscale_enabled=...` still wins).
        "tailscale_enabled": tailscale,
        **dataset_vars(s.dataset, s.target.local),
    }
    if s.gpu is not None:
        gv["supernode_gpu"] = s.gpu
    gv.update(s.extra_vars)
    return gv


def secret_vars(secrets: dict[str, str]) -> dict[str, object]:
    """The run's 0600 extra-vars: never the inventory, settings.json or a command line."""
    return {
        "supernode_hf_token": secrets.get("HF_TOKEN", ""),
        "supernode_wandb_api_key": secrets.get("WANDB_API_KEY", ""),
        "tailscale_auth_key": secrets.get("TAILSCALE_AUTH_KEY", ""),
    }


def start(
    s: ClientSettings,
    secrets: dict[str, str],
    base: Path | None = None,
    start_stack: bool = True,
    check: bool = False,
    ask_become_pass: bool = False,
    verbose: bool = False,
    status=None,
) -> tuple[playbook.PlaybookResult, Path]:
    """Save the settings, write the inventory, run client.yml. Returns the result and the key path."""
    side = side_dir("client", base)
    fetch_dir = side / "node-keys"
    fetch_dir.mkdir(exist_ok=True)
    gv = group_vars(s, fetch_dir, start_stack, tailscale=bool(secrets.get("TAILSCALE_AUTH_KEY")))
    inventory = playbook.write_inventory(side / "inventory.json", GROUP, s.target, gv)
    if not check:  # a dry run must not become the next real start's settings
        save_json(settings_path(base), asdict(s))
    result = playbook.run_playbook(
        "client.yml", inventory, side / "logs", secret_vars(secrets), check, ask_become_pass, verbose, status
    )
    return result, fetch_dir / f"{s.target.name}.pub"


NODE_KEY_PLAYBOOK = Path(__file__).parent / "playbooks" / "node-key.yml"


def create_key(
    s: ClientSettings,
    base: Path | None = None,
    check: bool = False,
    ask_become_pass: bool = False,
    verbose: bool = False,
    status=None,
) -> tuple[playbook.PlaybookResult, Path]:
    """Make the node key pair on the target (supernode role, ``keys`` entry point) and fetch
    the public key; needs no SuperLink address or CA yet. Returns the result and the key path."""
    side = side_dir("client", base)
    fetch_dir = side / "node-keys"
    fetch_dir.mkdir(exist_ok=True)
    gv = {"supernode_pki_dir": s.pki_dir, "supernode_public_key_fetch_dir": str(fetch_dir), **s.extra_vars}
    inventory = playbook.write_inventory(side / "keys-inventory.json", GROUP, s.target, gv)
    result = playbook.run_playbook(
        str(NODE_KEY_PLAYBOOK), inventory, side / "logs", None, check, ask_become_pass, verbose, status
    )
    return result, fetch_dir / f"{s.target.name}.pub"


def compose_argv(s: ClientSettings, action: str, tail: int = 100) -> list[str]:
    base = ["docker", "compose", "-f", "compose.yml", "--env-file", "client.env"]
    match action:
        case "stop":
            return [*base, "down"]  # keeps the state volume (the node's label secret)
        case "status":
            return [*base, "ps", "--all", "--format", "json"]
        case "logs":
            return [*base, "logs", "--no-color", "--tail", str(tail), SERVICE]
    raise ValueError(action)


def control(action: str, base: Path | None = None, tail: int = 100, ask_become_pass: bool = False) -> dict:
    """``stop``/``status``/``logs`` on the saved target; returns that host's command result."""
    s = load_settings(base)
    if s is None:
        raise BotError(
            "No client has been started from this machine yet",
            "run `zk0bot client start --dataset ... --superlink ... --ca ...` first",
            ExitCode.NOT_CONFIGURED,
        )
    side = side_dir("client", base)
    inventory = playbook.write_inventory(
        side / "control-inventory.json", GROUP, s.target, playbook.connection_vars(s.extra_vars)
    )
    results = playbook.run_remote(
        inventory, compose_argv(s, action, tail), s.config_dir, ask_become_pass=ask_become_pass
    )
    return results[s.target.name]


def parse_ps(stdout: str) -> list[dict]:
    """``docker compose ps --format json``: one JSON object per line (Compose >= 2.21) or a list."""
    text = stdout.strip()
    if not text:
        return []
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]
