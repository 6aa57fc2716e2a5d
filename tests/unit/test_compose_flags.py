"""The launcher's command lines (zk0.deploy.launch) and the Compose stacks' `command:` agree.

The Compose files the roles install are the production command lines; the loopback federation
and the benchmark start processes from the launcher's specs. Each spec is built from the
values found in the Compose file, and must render exactly that file's flags: a flag added on
one side only fails here.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from zk0.deploy import launch

ROLES = Path(__file__).resolve().parents[2] / "roles"


def _flags(tokens: list[str]) -> dict[str, str | None]:
    """``--flag value`` / ``--flag=value`` / bare ``--flag`` → {flag: value or None}."""
    flags: dict[str, str | None] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        assert token.startswith("--"), f"not a flag: {token!r} in {tokens}"
        if "=" in token:
            name, value = token.split("=", 1)
            flags[name] = value
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            flags[token] = tokens[i + 1]
            i += 1
        else:
            flags[token] = None
        i += 1
    return flags


def _service(role: str, name: str) -> dict:
    return yaml.safe_load((ROLES / role / "files" / "compose.yml").read_text())["services"][name]


def test_superlink_spec_renders_the_server_stack_command() -> None:
    command = _service("superlink", "superlink")["command"]
    assert command[0] == "flower-superlink"
    wanted = _flags(command[1:])
    spec = launch.SuperLinkSpec(
        ssl_ca_certfile=Path(wanted["--ssl-ca-certfile"]),
        ssl_certfile=Path(wanted["--ssl-certfile"]),
        ssl_keyfile=Path(wanted["--ssl-keyfile"]),
        database=Path(wanted["--database"]),
        host=wanted["--host"],
        port=int(wanted["--port"]),
        enable_supernode_auth="--enable-supernode-auth" in wanted,
        isolation=wanted.get("--isolation"),
        superexec_auth_secret_file=Path(wanted["--superexec-auth-secret-file"]),
        health_server_address=wanted.get("--health-server-address"),
    )
    argv = spec.argv()
    assert Path(argv[0]).name == "flower-superlink"
    assert _flags(argv[1:]) == wanted


def test_supernode_spec_renders_the_client_stack_command() -> None:
    script = _service("supernode", "supernode")["command"][0].replace("$$", "$")
    tokens = shlex.split(script.split("exec ", 1)[1])
    assert tokens[0] == "zk0-supernode"
    wanted = _flags(tokens[1:])
    node_config = dict(item.split("=", 1) for item in shlex.split(wanted["--node-config"]))
    spec = launch.SuperNodeSpec(
        superlink=wanted["--superlink"],
        root_certificates=Path(wanted["--root-certificates"]),
        auth_private_key=Path(wanted["--auth-supernode-private-key"]),
        node_config=node_config,
        host=wanted["--host"],
        port=wanted["--port"],  # a shell variable here; the spec renders it as given
        health_server_address=wanted.get("--health-server-address"),
        metrics_address=wanted.get("--metrics-address"),
    )
    argv = spec.argv()
    assert Path(argv[0]).name == "zk0-supernode"
    assert _flags(argv[1:]) == wanted


def test_a_flag_on_one_side_only_is_caught() -> None:
    """The comparison is not vacuous: the spec without the stack's isolation differs."""
    command = _service("superlink", "superlink")["command"]
    wanted = _flags(command[1:])
    spec = launch.SuperLinkSpec(Path("a"), Path("b"), Path("c"), Path("d"))
    assert set(_flags(spec.argv()[1:])) != set(wanted)
    assert "--isolation" in wanted and "--isolation" not in _flags(spec.argv()[1:])
