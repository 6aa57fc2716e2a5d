"""One parser per kind of value an operator types: HOST:PORT, port, certificate SAN, dataset URI.

Used by `zk0`, `zk0bot` and, through the Ansible filter plugin
(playbooks/filter_plugins/zk0_validate.py, linked into the superlink and supernode roles), by
the pre-flight play and the roles' first asserts. So that the rules exist once, this module
imports nothing but the standard library and zk0/data/uri.py (also stdlib only): the filter
plugin may run in an Ansible venv without zk0 and then loads this file by path, and this file
loads the dataset URI parser the same way.

Every parser raises ``ValueError`` whose message names the bad value (and the setting it came
from) and shows a correct example.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type checker sees the package import; run time tries both below
    from zk0.data.uri import DatasetURIError, parse_dataset_uri
else:
    try:
        from zk0.data.uri import DatasetURIError, parse_dataset_uri
    except ImportError:  # loaded by path (Ansible filter plugin) where the zk0 package is not importable
        _spec = importlib.util.spec_from_file_location(
            "_zk0_data_uri", Path(__file__).resolve().parent / "data" / "uri.py"
        )
        assert _spec is not None and _spec.loader is not None
        _uri = importlib.util.module_from_spec(_spec)
        sys.modules[_spec.name] = _uri  # dataclasses look their module up
        _spec.loader.exec_module(_uri)
        DatasetURIError, parse_dataset_uri = _uri.DatasetURIError, _uri.parse_dataset_uri

__all__ = [
    "HOSTPORT_EXAMPLE",
    "SAN_EXAMPLE",
    "DatasetURIError",
    "is_loopback",
    "parse_dataset_uri",
    "parse_host",
    "parse_hostport",
    "parse_port",
    "parse_san",
    "problems",
]

HOSTPORT_EXAMPLE = "link.example.org:8000"
SAN_EXAMPLE = "link.example.org"
_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
LOOPBACK_NAMES = frozenset({"localhost", "superlink"})  # superlink: the Compose service name, in-stack only


def _label(name: str) -> str:
    return f"{name} " if name else ""


def parse_port(value: object, name: str = "port") -> int:
    """A TCP port 1-65535 (an int or its decimal string)."""
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"-?[0-9]+", text):
        raise ValueError(f"{_label(name)}{value!r} is not a port number: give 1-65535, e.g. 8000")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{_label(name)}{value!r}: port {port} is out of range 1-65535, e.g. 8000")
    return port


def _host_problem(host: str) -> str:
    """Why ``host`` is neither an IP address nor a DNS name ('' when it is one)."""
    if not host:
        return "the host is empty"
    try:
        ipaddress.ip_address(host)
        return ""
    except ValueError:
        pass
    if ":" in host:
        return f"{host!r} is not a valid IPv6 address"
    if len(host) > 253:
        return "the host name is longer than 253 characters"
    labels = host.split(".")
    if labels[-1].isdigit():
        return f"{host!r} is not a valid IPv4 address"
    bad = next((lab for lab in labels if not _LABEL.match(lab)), None)
    if bad is not None:
        what = "an empty label" if not bad else f"label {bad!r}"
        return f"{host!r} is not a DNS name ({what}: letters, digits and '-' only)"
    return ""


def parse_host(value: object, name: str = "host") -> str:
    """A DNS name or an IP address (IPv6 without brackets); no scheme, port or path."""
    text = str(value).strip() if value is not None else ""
    if _SCHEME.match(text):
        raise ValueError(f"{_label(name)}{text!r} has a scheme: give only the name or IP, e.g. {SAN_EXAMPLE}")
    if "/" in text:
        raise ValueError(f"{_label(name)}{text!r} has a path: give only the name or IP, e.g. {SAN_EXAMPLE}")
    problem = _host_problem(text)
    if problem:
        raise ValueError(f"{_label(name)}{text!r}: {problem}; give a DNS name or IP, e.g. {SAN_EXAMPLE} or 203.0.113.7")
    return text


def parse_hostport(value: object, name: str = "address") -> tuple[str, int]:
    """``HOST:PORT``: HOST a DNS name or IP (IPv6 in brackets), PORT 1-65535; no scheme, no path."""
    text = str(value).strip() if value is not None else ""
    example = f"write HOST:PORT, e.g. {HOSTPORT_EXAMPLE} or [2001:db8::1]:8000"
    if not text:
        raise ValueError(f"{_label(name)}is empty: {example}")
    if _SCHEME.match(text):
        raise ValueError(f"{_label(name)}{text!r} has a scheme ({text.split('://')[0]}://): {example}")
    if "/" in text:
        raise ValueError(f"{_label(name)}{text!r} has a path: {example}")
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or not rest.startswith(":"):
            raise ValueError(f"{_label(name)}{text!r} is not [IPv6]:PORT: {example}")
        port_text = rest[1:]
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{_label(name)}{text!r}: {host!r} in brackets is not an IPv6 address: {example}"
            ) from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{_label(name)}{text!r} has no port: {example}")
        if ":" in host:
            raise ValueError(f"{_label(name)}{text!r}: an IPv6 address goes in brackets, e.g. [2001:db8::1]:8000")
        problem = _host_problem(host)
        if problem:
            raise ValueError(f"{_label(name)}{text!r}: {problem}; {example}")
    if not port_text:
        raise ValueError(f"{_label(name)}{text!r} has no port after ':': {example}")
    try:
        port = parse_port(port_text, "")
    except ValueError:
        raise ValueError(f"{_label(name)}{text!r}: port {port_text!r} is not 1-65535; {example}") from None
    return host, port


def parse_san(value: object, name: str = "SAN") -> str:
    """A certificate subject alternative name as nodes dial it: DNS name or IP, no scheme or port."""
    text = str(value).strip() if value is not None else ""
    if not text:
        raise ValueError(f"{_label(name)}is empty: give the DNS name or IP nodes use, e.g. {SAN_EXAMPLE}")
    fix = f"give only the DNS name or IP nodes use, e.g. {SAN_EXAMPLE} (the port goes elsewhere)"
    if _SCHEME.match(text):
        raise ValueError(f"{_label(name)}{text!r} has a scheme: {fix}")
    if "/" in text:
        raise ValueError(f"{_label(name)}{text!r} has a path: {fix}")
    if text.startswith("["):
        raise ValueError(f"{_label(name)}{text!r}: write an IPv6 address without brackets, e.g. 2001:db8::1")
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if ":" in text and text.count(":") == 1:
        raise ValueError(f"{_label(name)}{text!r} has a port: {fix}")
    problem = _host_problem(text)
    if problem:
        raise ValueError(f"{_label(name)}{text!r}: {problem}; {fix}")
    return text


def is_loopback(san: str) -> bool:
    """True for names only this machine (or the stack itself) can verify: 127.x, ::1, localhost."""
    try:
        return ipaddress.ip_address(san).is_loopback
    except ValueError:
        return san.lower() in LOOPBACK_NAMES


def _writable_dir_problem(path: str) -> str:
    """'' when ``path`` is (or can be created as) a directory this user can write."""
    target = Path(path).expanduser()
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable by this user"
    return ""


def problems(checks: list) -> list[str]:
    """Check ``[kind, name, value]`` triples; one message per problem (the pre-flight play's list).

    Kinds: hostport, port, san, sans (a list of SANs, at least one), dataset_uri, file (exists
    on this machine), dir_writable (exists or can be made, and is writable by this user),
    authorized_nodes (superlink_authorized_nodes: name plus public_key or public_key_file; a key
    file not fetched yet is allowed: that node waits).
    """
    found: list[str] = []
    for kind, name, value in checks:
        try:
            if kind == "hostport":
                parse_hostport(value, name)
            elif kind == "port":
                parse_port(value, name)
            elif kind == "san":
                parse_san(value, name)
            elif kind == "sans":
                entries = [value] if isinstance(value, str) else list(value or [])
                if not [e for e in entries if str(e).strip()]:
                    raise ValueError(f"{name} is empty: list the DNS names/IPs nodes use, e.g. [{SAN_EXAMPLE}]")
                for entry in entries:
                    if str(entry).strip():  # empty entries are dropped (the role selects the rest)
                        try:
                            parse_san(entry, f"{name} entry")
                        except ValueError as err:
                            found.append(str(err))
            elif kind == "dataset_uri":
                try:
                    parse_dataset_uri(value)
                except DatasetURIError as err:
                    raise ValueError(f"{name}: {err}") from None
            elif kind == "authorized_nodes":
                for i, node in enumerate(value or []):
                    label = f"{name}[{node.get('name') or i}]" if isinstance(node, dict) else f"{name}[{i}]"
                    if not isinstance(node, dict) or not node.get("name"):
                        found.append(
                            f"{label}: each entry needs a name, "
                            "e.g. {name: gpu-node-1, public_key_file: keys/gpu-node-1.pub}"
                        )
                    elif not node.get("public_key") and not node.get("public_key_file"):
                        found.append(f"{label}: give public_key (the OpenSSH line) or public_key_file")
                    # A public_key_file that is not there yet is no problem: the node waits (the
                    # superlink role says so) until the client play fetches it and server.yml runs again.
            elif kind == "file":
                if not value or not Path(str(value)).expanduser().is_file():
                    raise ValueError(f"{name}: file {value!r} does not exist on this control machine")
            elif kind == "dir_writable":
                if problem := _writable_dir_problem(str(value)):
                    raise ValueError(f"{name} {value!r}: {problem}")
            else:
                raise ValueError(f"unknown check kind {kind!r} for {name}")
        except ValueError as err:
            found.append(str(err))
    return found
