"""zk0bot's SSH tunnel to a server's loopback admin listener: when, and with which command."""

from __future__ import annotations

from pathlib import Path

import pytest

from zk0.bot import tunnel
from zk0.bot.errors import BotError, ExitCode
from zk0.bot.playbook import Target


def test_a_remote_server_with_a_loopback_admin_listener_needs_a_tunnel() -> None:
    remote = Target("admin@link.example.org")
    assert tunnel.needed(remote, "127.0.0.1", "")
    assert tunnel.needed(remote, "127.0.0.1", "127.0.0.1:8001")
    assert not tunnel.needed(Target(""), "127.0.0.1", "")  # zk0bot runs on the server itself
    assert not tunnel.needed(remote, "100.64.0.7", "")  # a tailnet address is reached directly
    assert not tunnel.needed(remote, "127.0.0.1", "100.64.0.7:8001")  # the admin said where


def test_the_tunnel_forwards_loopback_to_loopback_and_never_prompts() -> None:
    argv = tunnel.ssh_argv(Target("admin@link.example.org", ssh_port=2222, ssh_key=Path("/k/id")), 8001)
    assert argv[1:] == [
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=15",
        "-L",
        "127.0.0.1:8001:127.0.0.1:8001",
        "-p",
        "2222",
        "-i",
        "/k/id",
        "admin@link.example.org",
    ]


def test_an_unreachable_server_says_how_to_open_the_tunnel_by_hand() -> None:
    port = 1  # nothing listens there, and ssh to a closed port on loopback fails at once
    with (
        pytest.raises(BotError) as caught,
        tunnel.admin_tunnel(Target("nobody@127.0.0.1", ssh_port=9), "127.0.0.1", "", port, timeout=20),
    ):
        pass
    assert caught.value.code == ExitCode.UNREACHABLE
    assert "ssh -N -L 1:127.0.0.1:1 nobody@127.0.0.1" in caught.value.fix
