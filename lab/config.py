"""What the lab is made of: names, addresses and paths, in one typed place.

The addresses here and in inventory/lab/hosts.yml are the same facts; `LabConfig.check()`
compares them so that the two cannot drift apart silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from zk0 import __version__

ROOT = Path(__file__).resolve().parent.parent
LABEL = "org.zk0.lab"  # every container, network and volume the lab makes carries it


@dataclass(frozen=True)
class LabHost:
    name: str  # inventory name and container hostname
    address: str
    role: str  # "server" or "client"
    dataset_seed: int = 0

    @property
    def container(self) -> str:
        return f"zk0-lab-{self.name}"

    @property
    def docker_volume(self) -> str:
        return f"zk0-lab-{self.name}-docker"


@dataclass(frozen=True)
class LabConfig:
    network: str = "zk0-lab"
    subnet: str = "172.30.0.0/24"
    gateway: str = "172.30.0.1"
    registry_address: str = "172.30.0.2"
    registry_port: int = 5000
    # The registry is published on the controller's loopback for `docker push` (Docker trusts
    # plain HTTP to 127.0.0.1 without daemon settings); the hosts pull from registry_address.
    registry_push_port: int = 5000
    hosts: tuple[LabHost, ...] = (
        LabHost("server", "172.30.0.10", "server"),
        LabHost("client-1", "172.30.0.11", "client", dataset_seed=11),
        LabHost("client-2", "172.30.0.12", "client", dataset_seed=12),
    )
    # Not enrolled at first: the full-stack test adds it to prove enrollment via inventory.
    spare: LabHost = LabHost("client-3", "172.30.0.13", "client", dataset_seed=13)
    host_image: str = "zk0-lab-host:trixie"
    registry_image: str = "zk0-lab-registry:trixie"
    # What `make image` tags (inventory/lab/group_vars/all.yml derives the same name).
    zk0_image: str = field(default_factory=lambda: os.environ.get("ZK0_IMAGE", f"zk0:{__version__}"))
    proxy_image: str = field(default_factory=lambda: os.environ.get("ZK0_PROXY_IMAGE", f"zk0-proxy:{__version__}"))
    state_dir: Path = field(default_factory=lambda: Path(os.environ.get("ZK0_LAB_DIR", ROOT / ".lab")))
    inventory: Path = ROOT / "inventory" / "lab"

    @property
    def registry_container(self) -> str:
        return "zk0-lab-registry"

    @property
    def registry_volume(self) -> str:
        return "zk0-lab-registry-data"

    @property
    def pushed_image(self) -> str:
        """The image as the controller pushes it (loopback port of the registry)."""
        return f"127.0.0.1:{self.registry_push_port}/{self.zk0_image}"

    @property
    def lab_image(self) -> str:
        """The image as the lab hosts pull it (what inventory/lab names)."""
        return f"{self.registry_address}:{self.registry_port}/{self.zk0_image}"

    @property
    def server(self) -> LabHost:
        return next(h for h in self.hosts if h.role == "server")

    @property
    def clients(self) -> tuple[LabHost, ...]:
        return tuple(h for h in self.hosts if h.role == "client")

    def host(self, name: str) -> LabHost:
        for candidate in (*self.hosts, self.spare):
            if candidate.name == name:
                return candidate
        raise KeyError(f"no lab host named {name!r}; the lab has {[h.name for h in (*self.hosts, self.spare)]}")

    @property
    def ssh_key(self) -> Path:
        return self.state_dir / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "ssh" / "known_hosts"

    @property
    def datasets_dir(self) -> Path:
        return self.state_dir / "datasets"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def flwr_home(self) -> Path:
        return self.state_dir / "flwr"

    @property
    def superlink_address(self) -> str:
        """The proxy's public listener (what nodes dial)."""
        return f"{self.server.address}:8000"

    @property
    def admin_address(self) -> str:
        """The proxy's admin listener: on the server's lab address (inventory/lab), token-gated."""
        return f"{self.server.address}:8001"
