"""Render the edge proxy's nginx.conf and start nginx: the proxy image's entrypoint.

Standard library only: the proxy image has Python but not zk0. ``zk0.deploy.loopback``
imports this module to run the same configuration on 127.0.0.1 in tests.

    python3 render.py                 # render from ZK0_PROXY_* variables, then exec nginx
    python3 render.py --render-only   # render and exit (prints where)
    python3 render.py --health        # container health probe: /health through the proxy

The admin token is read from a 0600 file (a Compose secret) and written into the run
directory's map file only; it never reaches the environment or a command line.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).with_name("nginx.conf.template")
CONFIG_NAME = "nginx.conf"
TOKEN_MAP = "admin-token.map"
WORKERS = "workers.conf"
# A hex or URL-safe token: nothing nginx or a regex would read as syntax.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{32,256}")
_PLACEHOLDER = re.compile(r"\$\{(ZK0_[A-Z_]+)\}")


class ProxyConfigError(ValueError):
    """The proxy cannot start with these settings; the message says which and how to fix it."""


@dataclass(frozen=True)
class ProxyConfig:
    """Where the proxy listens and what it protects. Defaults are the server stack's."""

    run_dir: Path = Path("/run/zk0-proxy")
    public_listen: str = "8000"
    admin_listen: str = "8001"
    upstream: str = "superlink:8000"
    upstream_name: str = "superlink"  # the SAN the SuperLink certificate must carry
    tls_cert: Path = Path("/etc/zk0/certs/superlink.pem")
    tls_key: Path = Path("/run/secrets/superlink_key")
    ca_cert: Path = Path("/etc/zk0/certs/ca.pem")
    admin_token_file: Path = Path("/run/secrets/admin_token")
    access_log: str = "/dev/stdout"
    fleet_rate: str = "50r/s"
    fleet_burst: int = 1000
    fleet_connections: int = 64

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ProxyConfig:
        """Each field from ``ZK0_PROXY_<FIELD>`` when set (e.g. ZK0_PROXY_FLEET_RATE=20r/s)."""
        env = dict(os.environ if env is None else env)
        given: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"ZK0_PROXY_{f.name.upper()}")
            if raw is None:
                continue
            default: Any = f.default  # every field has one: str, int or Path
            given[f.name] = Path(raw) if isinstance(default, Path) else type(default)(raw)
        return cls(**given)

    def placeholders(self) -> dict[str, str]:
        return {f"ZK0_{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self)}


def read_token(path: Path) -> str | None:
    """The admin token, or None when the file is missing (the admin listener then refuses all)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not TOKEN_PATTERN.fullmatch(token):
        raise ProxyConfigError(
            f"admin token in {path} must be 32-256 characters of A-Z a-z 0-9 _ - "
            "(the superlink role writes a 64-character hex token; `zk0 admin token` makes one)"
        )
    return token


def render(config: ProxyConfig, template: str | None = None) -> str:
    """The nginx.conf text for ``config``; fails on a placeholder the config does not fill."""
    values = config.placeholders()
    text = TEMPLATE.read_text(encoding="utf-8") if template is None else template

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ProxyConfigError(f"nginx template uses ${{{name}}}, which ProxyConfig does not define")
        return values[name]

    return _PLACEHOLDER.sub(fill, text)


def write(config: ProxyConfig) -> Path:
    """Render into ``run_dir`` (nginx.conf, the token map, scratch dirs); returns nginx.conf."""
    run = config.run_dir
    run.mkdir(parents=True, exist_ok=True, mode=0o700)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run / sub).mkdir(exist_ok=True, mode=0o700)
    # nginx started as root (tests and benchmarks on a host) would drop its workers to
    # "nobody", who cannot reach a private run directory; the image runs as uid 49999 anyway.
    (run / WORKERS).write_text("user root;\n" if os.geteuid() == 0 else "", encoding="utf-8")
    token = read_token(config.admin_token_file)
    if token is None:
        print(
            f"zk0-proxy: no admin token at {config.admin_token_file}: the admin listener refuses "
            "every request (the superlink role writes one)",
            file=sys.stderr,
        )
    entry = f'"~^Bearer {token}$" 1;\n' if token else ""
    fd = os.open(run / TOKEN_MAP, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(entry)
    conf = run / CONFIG_NAME
    conf.write_text(render(config), encoding="utf-8")
    return conf


def nginx_argv(conf: Path, nginx: str = "nginx") -> list[str]:
    """Foreground nginx on ``conf``; ``-e stderr`` so no compiled-in log path is opened."""
    return [nginx, "-c", str(conf), "-e", "stderr", "-g", "daemon off;"]


def health(config: ProxyConfig) -> int:
    """0 when the public listener answers /health through to the SuperLink (the container probe)."""
    import ssl
    import urllib.request

    port = config.public_listen.rsplit(":", 1)[-1]
    context = ssl.create_default_context(cafile=str(config.ca_cert))
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/health", timeout=5, context=context) as reply:
            return 0 if reply.status == 200 else 1
    except OSError as err:
        print(f"unhealthy: {err}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--health" in args:
        return health(ProxyConfig.from_env())
    try:
        conf = write(ProxyConfig.from_env())
    except (ProxyConfigError, ValueError, OSError) as err:
        print(f"zk0-proxy: error: {err}", file=sys.stderr)
        return 2
    if "--render-only" in args:
        print(conf)
        return 0
    os.execvp("nginx", nginx_argv(conf))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
