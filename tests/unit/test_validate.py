"""zk0.validate: one parser per kind of value (HOST:PORT, port, SAN, dataset URI), and the
Ansible filter plugin that carries the same rules into the pre-flight play and the roles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from zk0 import validate

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("link.example.org:8000", ("link.example.org", 8000)),
        ("203.0.113.7:1", ("203.0.113.7", 1)),
        ("[2001:db8::1]:65535", ("2001:db8::1", 65535)),
        ("localhost:9092", ("localhost", 9092)),
        (" node-1.lab:8000 ", ("node-1.lab", 8000)),
    ],
)
def test_good_host_ports(value: str, expected: tuple[str, int]) -> None:
    assert validate.parse_hostport(value) == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("host:99999", "port '99999' is not 1-65535"),
        ("host:0", "port '0' is not 1-65535"),
        ("host:-5", "port '-5' is not 1-65535"),
        ("https://host", "has a scheme (https://)"),
        ("host:8000/path", "has a path"),
        ("host", "has no port"),
        ("host:", "has no port after ':'"),
        ("2001:db8::1:8000", "an IPv6 address goes in brackets"),
        ("[not-ip]:8000", "is not an IPv6 address"),
        ("1.2.3.999:8000", "not a valid IPv4 address"),
        ("bad_-.host..x:80", "not a DNS name"),
        ("", "is empty"),
    ],
)
def test_bad_host_ports_name_the_value_and_show_an_example(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=r"^--superlink") as err:
        validate.parse_hostport(value, "--superlink")
    message = str(err.value)
    assert says in message
    assert "link.example.org:8000" in message or "[2001:db8::1]:8000" in message
    if value:
        assert repr(value.strip()) in message


@pytest.mark.parametrize("value", ["link.example.org", "203.0.113.7", "2001:db8::1", "localhost", "node_1"])
def test_good_sans(value: str) -> None:
    assert validate.parse_san(value) == value


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("https://host:8000", "has a scheme"),
        ("host:8000", "has a port"),
        ("host/x", "has a path"),
        ("[::1]", "without brackets"),
        ("", "is empty"),
        ("a..b", "an empty label"),
    ],
)
def test_bad_sans(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\.") as err:
        validate.parse_san(value, "--san")
    assert says in str(err.value) and str(err.value).startswith("--san")


@pytest.mark.parametrize(
    ("value", "ok"), [(1, True), ("65535", True), (0, False), (-5, False), (99999, False), ("x", False), (True, False)]
)
def test_ports(value: object, ok: bool) -> None:
    if ok:
        assert validate.parse_port(value) == int(str(value))
    else:
        with pytest.raises(ValueError, match=r"e\.g\. 8000"):
            validate.parse_port(value, "--port")


def test_the_dataset_uri_parser_is_zk0s_own() -> None:
    from zk0.data import uri

    assert validate.parse_dataset_uri is uri.parse_dataset_uri
    for bad in ("hf:owner/name@", "hf:/x", "local:relative", "s3:bucket"):
        with pytest.raises(validate.DatasetURIError, match=r"hf:owner/name|revision|absolute"):
            validate.parse_dataset_uri(bad)


def test_loopback_names() -> None:
    assert all(validate.is_loopback(v) for v in ("127.0.0.1", "127.9.9.9", "::1", "localhost", "superlink"))
    assert not any(validate.is_loopback(v) for v in ("link.example.org", "203.0.113.7", "100.64.0.1"))


def test_problems_lists_every_bad_value_once(tmp_path: Path) -> None:
    key = tmp_path / "a.pub"
    key.write_text("ecdsa-sha2-nistp384 AAAA x\n")
    found = validate.problems(
        [
            ["hostport", "supernode_superlink_address", "host:99999"],
            ["sans", "superlink_cert_sans", ["ok.example.org", "", "https://h", "h:1"]],
            ["port", "superlink_admin_port", 0],
            ["dataset_uri", "supernode_dataset_uri", "hf:owner/name@"],
            ["file", "supernode_ca_cert_src", str(tmp_path / "missing.pem")],
            ["dir_writable", "superlink_pki_local_dir", str(key / "sub")],
            [
                "authorized_nodes",
                "superlink_authorized_nodes",
                [
                    {"name": "a", "public_key_file": str(key)},
                    {"name": "b", "public_key_file": "/nope.pub"},
                    {"name": "c"},
                ],
            ],
            ["hostport", "fine", "[::1]:80"],
        ]
    )
    assert len(found) == 8, found
    assert any("'https://h' has a scheme" in f for f in found) and any("'h:1' has a port" in f for f in found)
    # A key file not fetched yet is no problem: that node waits (server.yml before client.yml).
    assert not any("superlink_authorized_nodes[b]" in f for f in found), found
    assert any("superlink_authorized_nodes[c]" in f for f in found)
    assert any("is not a directory" in f for f in found)


def test_the_filter_plugin_loads_the_same_rules_without_zk0_installed() -> None:
    """The roles' link to the plugin, run by a Python that cannot import zk0 (-I -S: no site-packages)."""
    plugin = REPO / "roles" / "supernode" / "filter_plugins"
    assert (plugin / "zk0_validate.py").resolve() == (REPO / "playbooks" / "filter_plugins" / "zk0_validate.py")
    code = (
        f"import sys; sys.path.insert(0, {str(plugin)!r}); import zk0_validate as z; "
        "print(z._rules.__name__, z._rules.__file__); print(z.zk0_error('hf:/x', 'dataset_uri', 'u')); "
        "print(repr(z.zk0_error('link.example.org:8000', 'hostport')))"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, cwd="/", check=True)
    lines = out.stdout.splitlines()
    assert lines[0] == f"_zk0_validate {REPO / 'zk0' / 'validate.py'}"  # loaded by path, not imported
    assert lines[1].startswith("u: dataset URI 'hf:/x'") and lines[2] == "''"


def test_pki_superlink_cert_refuses_a_san_with_a_scheme_and_warns_without_a_public_one(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from zk0.cli import app
    from zk0.deploy import pki

    pki.create_ca(tmp_path)
    runner = CliRunner()
    bad = runner.invoke(app, ["pki", "superlink-cert", "--dir", str(tmp_path), "--san", "https://host:8000"])
    assert bad.exit_code == 2 and "--san 'https://host:8000' has a scheme" in bad.stderr
    assert not (tmp_path / "superlink.pem").exists()
    loop = runner.invoke(app, ["pki", "superlink-cert", "--dir", str(tmp_path)])
    assert loop.exit_code == 0 and "warning: no --san that nodes on other machines can use" in loop.stderr
    assert "--san link.example.org" in loop.stderr
    public = runner.invoke(app, ["pki", "superlink-cert", "--dir", str(tmp_path), "--san", "link.example.org"])
    assert public.exit_code == 0 and "warning" not in public.stderr
