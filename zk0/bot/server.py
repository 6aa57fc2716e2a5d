"""`zk0bot server ...`: the admin's SuperLink, its enrolled nodes and its admin connection.

``server start`` runs ``playbooks/server.yml`` (docker, nvidia when asked, tailscale when a
TAILSCALE_AUTH_KEY is given, superlink roles) against this machine or ``--host``, with the
federation CA kept on the admin's machine in the zk0bot state dir (``server/pki``; ``ca.key``
never leaves it), then writes the admin's flwr connection (``$FLWR_HOME/config.toml``,
default name ``zk0``).

Enrollment decision: the enrolled nodes are a list in the state dir (``server/nodes.json``
+ ``server/node-keys/<name>.pub``) that becomes the role's ``superlink_authorized_nodes``.
``server enroll`` records the key there *and* registers it at once through the admin's
connection (zk0.deploy.enrollment: idempotent, a second enroll is a no-op). Both, because
the superlink role unregisters every key not in its list on each run, and Flower 1.42 keeps
an unregistered key reserved forever: a key registered only through the Control API would be
burnt by the next ``server start``. ``server remove`` drops it from the list and unregisters.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from zk0 import validate
from zk0.bot import playbook, state
from zk0.bot.client import DEFAULT_IMAGE
from zk0.bot.errors import BotError, ExitCode
from zk0.bot.state import load_json, save_json, side_dir
from zk0.monitoring import headline

GROUP = "zk0_server"
DEFAULT_CONNECTION = "zk0"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}")


@dataclass
class ServerSettings:
    host: str = ""
    ssh_port: int | None = None
    ssh_key: str = ""
    image: str = DEFAULT_IMAGE
    image_source: str = "pull"
    sans: list[str] = field(default_factory=list)
    port: int = 8000  # the proxy's public listener (nodes)
    admin_bind: str = "127.0.0.1"  # the proxy's admin listener (Control API, token): loopback or a tailnet IP
    admin_port: int = 8001
    address: str = ""  # how the admin reaches the admin listener; default: see admin_address
    connection: str = DEFAULT_CONNECTION
    config_dir: str = "/etc/zk0/server"
    wandb_mode: str = "offline"
    secrets_file: str = ""  # the path only: read again on every start, never copied
    extra_vars: dict[str, object] = field(default_factory=dict)

    @property
    def target(self) -> playbook.Target:
        return playbook.Target(self.host, self.ssh_port, Path(self.ssh_key) if self.ssh_key else None)

    @property
    def admin_address(self) -> str:
        """The admin listener: its bind address when that is a private/tailnet IP, else 127.0.0.1
        (on the server itself, or through `ssh -N -L PORT:127.0.0.1:PORT` to it)."""
        if self.address:
            return self.address
        host = self.admin_bind if self.admin_bind not in ("127.0.0.1", "0.0.0.0") else "127.0.0.1"
        return f"{host}:{self.admin_port}"


def settings_path(base: Path | None = None) -> Path:
    return side_dir("server", base) / "settings.json"


def load_settings(base: Path | None = None) -> ServerSettings | None:
    return state.load_settings(ServerSettings, settings_path(base))


def merge(saved: ServerSettings | None, **given: object) -> ServerSettings:
    """Options given now win; the rest come from the saved settings, then the defaults."""
    return state.merge_settings(ServerSettings, saved, given)


# ---------------------------------------------------------------- enrolled nodes (the list is the truth)


def nodes_path(base: Path | None = None) -> Path:
    return side_dir("server", base) / "nodes.json"


def enrolled(base: Path | None = None) -> list[dict[str, str]]:
    path = nodes_path(base)
    nodes = load_json(path, [])
    if not isinstance(nodes, list):
        raise BotError(f"{path} is not a list of nodes", f"fix or delete {path}", ExitCode.USAGE)
    return nodes


def group_vars(s: ServerSettings, base: Path | None = None, tailscale: bool = False) -> dict[str, object]:
    """The superlink role's variables (no secrets); ``tailscale``: a Tailscale auth key was given."""
    side = side_dir("server", base)
    sans = s.sans or ([s.target.name] if not s.target.local else ["localhost"])
    check_values(s, sans)
    gv: dict[str, object] = {
        "superlink_image": s.image,
        "superlink_image_source": s.image_source,
        "superlink_cert_sans": sans,
        "superlink_port": s.port,
        "superlink_admin_bind_address": s.admin_bind,
        "superlink_admin_port": s.admin_port,
        "superlink_config_dir": s.config_dir,
        "superlink_pki_dir": f"{s.config_dir}/pki",
        "superlink_pki_local_dir": str(side / "pki"),
        # zk0bot's own CA directory: a CA is made there on the first start from this machine only
        # (the pre-flight play still refuses when the server already has another federation's CA).
        "superlink_ca_create": not (side / "pki" / "ca.pem").exists(),
        "superlink_authorized_nodes": [{"name": n["name"], "public_key_file": n["key_file"]} for n in enrolled(base)],
        "superlink_unregister_unlisted": True,
        "superlink_wandb_mode": s.wandb_mode,
        # The tailscale role runs when its auth key is given (a `--var tailscale_enabled=...` still wins).
        "tailscale_enabled": tailscale,
    }
    gv.update(s.extra_vars)
    return gv


def check_values(s: ServerSettings, sans: list[str]) -> None:
    """--san, --port, --address and the admin listener, by zk0.validate's rules (exit 2 when bad)."""
    checks = [(validate.parse_san, san, "--san") for san in sans] + [
        (validate.parse_port, s.port, "--port"),
        (validate.parse_port, s.admin_port, "superlink_admin_port"),
        (validate.parse_host, s.admin_bind, "superlink_admin_bind_address"),
    ]
    if s.address:
        checks.append((validate.parse_hostport, s.address, "--address"))
    for parse, value, name in checks:
        try:
            parse(value, name)
        except ValueError as err:
            raise BotError(str(err), "fix the value and run `zk0bot server start` again", ExitCode.USAGE) from None


def loopback_only(sans: list[str]) -> bool:
    """True when no SAN is one that nodes on other machines could dial."""
    return all(validate.is_loopback(san) for san in sans)


def start(
    s: ServerSettings,
    secrets: dict[str, str],
    base: Path | None = None,
    check: bool = False,
    ask_become_pass: bool = False,
    verbose: bool = False,
    status=None,
):
    """Run server.yml; on success write the admin connection. Returns (result, connection file or None)."""
    side = side_dir("server", base)
    gv = group_vars(s, base, tailscale=bool(secrets.get("TAILSCALE_AUTH_KEY")))
    inventory = playbook.write_inventory(side / "inventory.json", GROUP, s.target, gv)
    if not check:  # a dry run must not become the next real start's settings
        save_json(settings_path(base), asdict(s))
    # Secrets go only to the run's 0600 extra-vars file.
    secret: dict[str, object] = {
        "superlink_wandb_api_key": secrets.get("WANDB_API_KEY", ""),
        "tailscale_auth_key": secrets.get("TAILSCALE_AUTH_KEY", ""),
    }
    result = playbook.run_playbook(
        "server.yml", inventory, side / "logs", secret, check, ask_become_pass, verbose, status
    )
    conn_file = None
    if result.ok and not check:
        from zk0.deploy import admin_auth
        from zk0.deploy.connection import write_connection

        conn_file = write_connection(s.connection, s.admin_address, side / "pki" / "ca.pem")
        admin_auth.login(s.connection, admin_auth.read_token(side / "pki" / "admin.token"))
    return result, conn_file


def control(action: str, base: Path | None = None, tail: int = 100, ask_become_pass: bool = False) -> dict:
    s = load_settings(base)
    if s is None:
        raise BotError(
            "No server has been started from this machine yet",
            "run `zk0bot server start` first",
            ExitCode.NOT_CONFIGURED,
        )
    compose = ["docker", "compose", "-f", "compose.yml", "--env-file", "server.env"]
    argv = {
        "stop": [*compose, "down"],  # keeps the volumes: state database and outputs
        "status": [*compose, "ps", "--all", "--format", "json"],
        "logs": [*compose, "logs", "--no-color", "--tail", str(tail)],  # every service: ServerApps log in superexec
        "metrics": [*compose, "exec", "-T", "monitor", "python", "-c", headline.SCRAPE_CODE],
    }[action]
    inventory = playbook.write_inventory(
        side_dir("server", base) / "control-inventory.json", GROUP, s.target, playbook.connection_vars(s.extra_vars)
    )
    return playbook.run_remote(inventory, argv, s.config_dir, ask_become_pass=ask_become_pass)[s.target.name]


# ---------------------------------------------------------------- enroll / remove


def connection_exists(name: str) -> bool:
    from zk0.deploy.connection import CONFIG_FILE, flwr_home

    path = flwr_home() / CONFIG_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except tomllib.TOMLDecodeError:
        return False
    return isinstance(data.get("superlink", {}).get(name), dict)


def _register_error(err: Exception, connection: str) -> BotError:
    from zk0.deploy.enrollment import KeyBurnedError

    if isinstance(err, KeyBurnedError):  # not a connection problem: the message carries its own fix
        return BotError(str(err), "enroll the node's new public key under the same name", ExitCode.FAILED)
    return BotError(
        f"The key is enrolled but the SuperLink did not register it ({err})",
        f"check `zk0bot doctor --superlink ... --ca ...` and connection {connection!r}; "
        "the next `zk0bot server start` registers it too",
        ExitCode.UNREACHABLE,
    )


def enroll(
    public_key: Path, name: str, connection: str = DEFAULT_CONNECTION, base: Path | None = None, register: bool = True
) -> list[str]:
    """Record the key under ``name`` and register it now; returns what happened, line by line."""
    from zk0.deploy import enrollment

    if not _NAME.fullmatch(name):
        raise BotError(f"Node name {name!r} is not usable", "use letters, digits, '.', '_' or '-'", ExitCode.USAGE)
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        key = enrollment.load_public_key(public_key)
    except (enrollment.EnrollmentError, UnsupportedAlgorithm) as err:
        raise BotError(
            str(err),
            "ask the operator for the one-line supernode.key.pub (`zk0bot keys show`)",
            ExitCode.NOT_FOUND if not Path(public_key).exists() else ExitCode.USAGE,
        ) from err
    fp = enrollment.fingerprint(key)
    nodes = enrolled(base)
    messages = []
    same_name = next((n for n in nodes if n["name"] == name), None)
    same_key = next((n for n in nodes if n["fingerprint"] == fp), None)
    if same_key and same_key["name"] != name:
        raise BotError(
            f"This key is already enrolled as {same_key['name']!r}",
            f"use --name {same_key['name']} or remove that node first",
            ExitCode.USAGE,
        )
    if same_name and same_name["fingerprint"] != fp:
        raise BotError(
            f"Node name {name!r} is enrolled with another key ({same_name['fingerprint']})",
            f"run `zk0bot server remove {name}` first, or pick another --name",
            ExitCode.USAGE,
        )
    keys_dir = side_dir("server", base) / "node-keys"
    keys_dir.mkdir(exist_ok=True)
    key_file = keys_dir / f"{name}.pub"
    if same_name is None:
        shutil.copyfile(public_key, key_file)
        nodes.append({"name": name, "fingerprint": fp, "key_file": str(key_file)})
        save_json(nodes_path(base), nodes)
        messages.append(f"enrolled {name} ({fp}) in {nodes_path(base)}")
    else:
        messages.append(f"{name} ({fp}) already enrolled")
    if not register:
        return messages
    if not connection_exists(connection):
        messages.append(f"no connection {connection!r} yet: `zk0bot server start` registers it with the SuperLink")
        return messages
    try:
        outcome = enrollment.register(key_file, connection)
    except enrollment.EnrollmentError as err:
        raise _register_error(err, connection) from err
    messages.append(f"SuperLink: {outcome.message}")
    return messages


def remove(name: str, connection: str = DEFAULT_CONNECTION, base: Path | None = None) -> list[str]:
    """Drop ``name`` from the list and unregister its key (Flower then keeps the key reserved)."""
    from zk0.deploy import enrollment

    nodes = enrolled(base)
    node = next((n for n in nodes if n["name"] == name), None)
    if node is None:
        raise BotError(
            f"No enrolled node is named {name!r}", "list them with `zk0bot server nodes`", ExitCode.NOT_FOUND
        )
    messages = []
    if connection_exists(connection):
        try:
            messages.append(f"SuperLink: {enrollment.unregister(node['key_file'], connection).message}")
        except enrollment.EnrollmentError as err:
            raise BotError(
                f"The SuperLink did not unregister {name} ({err})",
                "check the SuperLink, then run this again",
                ExitCode.UNREACHABLE,
            ) from err
    else:
        messages.append(f"no connection {connection!r}: the next `zk0bot server start` unregisters it")
    save_json(nodes_path(base), [n for n in nodes if n["name"] != name])
    messages.append(f"removed {name} ({node['fingerprint']}); to return, the node needs a new key pair")
    return messages


def node_table(connection: str = DEFAULT_CONNECTION, base: Path | None = None) -> list[dict[str, str]]:
    """Enrolled nodes joined with the SuperLink's view (status, node id) by key fingerprint."""
    from zk0.deploy import enrollment

    live: dict[str, enrollment.Node] = {}
    if connection_exists(connection):
        try:
            live = {n.fingerprint: n for n in enrollment.list_nodes(connection)}
        except enrollment.EnrollmentError as err:
            raise BotError(
                f"The SuperLink did not answer ({err})", "check it with `zk0bot doctor`", ExitCode.UNREACHABLE
            ) from err
    rows = []
    for n in enrolled(base):
        node = live.pop(n["fingerprint"], None)
        rows.append(
            {
                "name": n["name"],
                "fingerprint": n["fingerprint"],
                "node_id": str(node.node_id) if node else "-",
                "status": node.status if node else "not registered",
            }
        )
    for fp, node in live.items():  # registered but not in the list: the next start unregisters them
        rows.append({"name": "(not enrolled)", "fingerprint": fp, "node_id": str(node.node_id), "status": node.status})
    return rows
