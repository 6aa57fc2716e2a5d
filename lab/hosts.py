"""Bring the lab's network, registry and hosts up, and take exactly those down again.

A lab host is a Debian 13 systemd container with an SSH server, its own address on the lab
network and its own Docker data volume (the roles install Docker Engine inside it: overlay2
needs a real filesystem under /var/lib/docker, not the container's overlay). Clients get
their private dataset bind-mounted read-only at /srv/zk0/dataset, like a robot's data disk.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import shutil
import socket
import subprocess
import time
from pathlib import Path

from lab import docker as d
from lab.config import LABEL, ROOT, LabConfig, LabHost

# What systemd and an inner dockerd need, without --privileged (the host may lack
# capabilities that it implies); the same list as the Molecule scenarios.
HOST_CAPS = ["SYS_ADMIN", "NET_ADMIN", "NET_RAW", "SYS_PTRACE", "SYS_NICE", "IPC_LOCK", "DAC_READ_SEARCH", "MKNOD"]
DATASET_MOUNT = "/srv/zk0/dataset"
ARCHIVE_MOUNT = "/srv/zk0/images/zk0.tar"


def build_images(cfg: LabConfig, systemd_image: str = "zk0-systemd:trixie") -> None:
    if not d.exists("image", systemd_image):
        subprocess.run([str(ROOT / "scripts" / "build-systemd-image.sh")], check=True)
    context = ROOT / "lab" / "images"
    # The base's id goes into the cache key: a rebuilt systemd image rebuilds both.
    base_id = d.docker("image", "inspect", "-f", "{{.Id}}", systemd_image).stdout.strip()
    for image, dockerfile in ((cfg.host_image, "host.Dockerfile"), (cfg.registry_image, "registry.Dockerfile")):
        built = d.build_cached(image, context / dockerfile, context, {"SYSTEMD_IMAGE": systemd_image}, base_id)
        print(f"  image {image}: {'built' if built else 'cached'}")


def ensure_network(cfg: LabConfig) -> None:
    if d.exists("network", cfg.network):
        subnet = d.docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", cfg.network).stdout.strip()
        if subnet != cfg.subnet:
            raise d.LabError(
                f"network {cfg.network} exists with subnet {subnet}, not {cfg.subnet}: "
                "run `make demo-down` (or `docker network rm zk0-lab`) and retry."
            )
        return
    taken = d.docker("network", "ls", "-q").stdout.split()
    wanted = ipaddress.ip_network(cfg.subnet)
    for net in taken:
        for subnet in d.docker(
            "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", net
        ).stdout.split():
            try:
                if ipaddress.ip_network(subnet, strict=False).overlaps(wanted):
                    raise d.LabError(
                        f"subnet {cfg.subnet} overlaps Docker network {net} ({subnet}): "
                        "remove that network or change LabConfig.subnet and inventory/lab."
                    )
            except ValueError:
                continue
    d.docker(
        "network",
        "create",
        "--driver",
        "bridge",
        "--subnet",
        cfg.subnet,
        "--gateway",
        cfg.gateway,
        "--label",
        f"{LABEL}=1",
        cfg.network,
    )


def ensure_registry(cfg: LabConfig) -> None:
    if d.running(cfg.registry_container):
        return
    if d.exists("container", cfg.registry_container):
        d.docker("start", cfg.registry_container)
    else:
        d.docker("volume", "create", "--label", f"{LABEL}=1", cfg.registry_volume)
        d.docker(
            "run",
            "-d",
            "--name",
            cfg.registry_container,
            "--label",
            f"{LABEL}=1",
            "--network",
            cfg.network,
            "--ip",
            cfg.registry_address,
            "-p",
            f"127.0.0.1:{cfg.registry_push_port}:{cfg.registry_port}",
            "-v",
            f"{cfg.registry_volume}:/var/lib/docker-registry",
            "--restart",
            "unless-stopped",
            cfg.registry_image,
        )
    wait_registry(cfg, 60)


def wait_registry(cfg: LabConfig, timeout: float) -> None:
    """Until the registry answers its API (GET /v2/ -> 200). Docker's port proxy accepts a
    connection before the registry inside listens, and closes it: a TCP check is not enough."""
    import urllib.request

    url = f"http://127.0.0.1:{cfg.registry_push_port}/v2/"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise d.LabError(
                f"the lab registry at {url} did not answer within {timeout:.0f} s: "
                f"see `docker logs {cfg.registry_container}`."
            )
        time.sleep(0.5)


def push_image(cfg: LabConfig) -> bool:
    """Push the zk0 and proxy images to the lab registry; False when the registry already has them."""
    pushed = False
    for image in (cfg.zk0_image, cfg.proxy_image):
        local_id = d.docker("image", "inspect", "-f", "{{.Id}}", image, check=False)
        if local_id.returncode != 0:
            raise d.LabError(f"image {image} is missing: run `make image` (make demo does).")
        target = f"127.0.0.1:{cfg.registry_push_port}/{image}"
        d.docker("tag", image, target)
        marker = cfg.state_dir / f"pushed-{image.partition(':')[0]}-id"
        if marker.exists() and marker.read_text().strip() == local_id.stdout.strip() and _registry_has(cfg, image):
            continue
        d.docker("push", target, timeout=1800)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(local_id.stdout.strip() + "\n")
        pushed = True
    return pushed


def _registry_has(cfg: LabConfig, image: str) -> bool:
    import urllib.request

    repo, _, tag = image.partition(":")
    url = f"http://127.0.0.1:{cfg.registry_push_port}/v2/{repo}/manifests/{tag or 'latest'}"
    request = urllib.request.Request(
        url, method="HEAD", headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


def ensure_ssh_key(cfg: LabConfig) -> None:
    if cfg.ssh_key.exists():
        return
    cfg.ssh_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "zk0-lab-controller", "-f", str(cfg.ssh_key)], check=True
    )


def ensure_dataset(cfg: LabConfig, host: LabHost) -> Path:
    """The client's private synthetic SO-100 dataset, made here once (seeded per host): front and
    wrist cameras stored as video, as lerobot-record stores them (as fast to write as images)."""
    from zk0.data.synthetic import SyntheticDatasetConfig, ensure_synthetic_dataset

    root = cfg.datasets_dir / host.name
    recording = SyntheticDatasetConfig.recording(episodes=6, frames_per_episode=24, seed=host.dataset_seed)
    ensure_synthetic_dataset(root, recording)
    # The SuperNode runs as uid 49999 inside the inner container: world-readable, read-only mount.
    subprocess.run(["chmod", "-R", "a+rX", str(cfg.datasets_dir)], check=True)
    return root


def image_archive(cfg: LabConfig) -> Path | None:
    """The `docker save` file of the zk0 image when it holds the image built now, else None."""
    archive = cfg.state_dir / "images" / "zk0.tar"
    marker = archive.with_suffix(".id")
    image_id = d.docker("image", "inspect", "-f", "{{.Id}}", cfg.zk0_image, check=False).stdout.strip()
    if image_id and archive.exists() and marker.exists() and marker.read_text().strip() == image_id:
        return archive
    return None


def save_image_archive(cfg: LabConfig) -> Path:
    """`docker save` of the zk0 image for an air-gapped host (superlink/supernode_image_source: archive)."""
    if (current := image_archive(cfg)) is not None:
        return current
    archive = cfg.state_dir / "images" / "zk0.tar"
    archive.parent.mkdir(parents=True, exist_ok=True)
    image_id = d.docker("image", "inspect", "-f", "{{.Id}}", cfg.zk0_image).stdout.strip()
    partial = archive.with_suffix(".tar.partial")
    d.docker("save", "-o", str(partial), cfg.zk0_image, timeout=1800)
    partial.chmod(0o644)
    partial.rename(archive)
    archive.with_suffix(".id").write_text(image_id + "\n")
    return archive


def ensure_host(cfg: LabConfig, host: LabHost, archive: Path | None = None) -> bool:
    """Create and start the host container; returns True when it was created.

    `archive` (a `docker save` file) is mounted read-only at ARCHIVE_MOUNT: an air-gapped
    host that receives the image as a file.
    """
    if d.running(host.container):
        return False
    if d.exists("container", host.container):
        d.docker("start", host.container)
        return False
    d.docker("volume", "create", "--label", f"{LABEL}=1", host.docker_volume)
    authorized = cfg.ssh_key.with_suffix(".pub")
    argv = [
        "run",
        "-d",
        "--name",
        host.container,
        "--hostname",
        host.name,
        "--label",
        f"{LABEL}=1",
        "--network",
        cfg.network,
        "--ip",
        host.address,
        "--cgroupns",
        "host",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "apparmor=unconfined",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        "--tmpfs",
        "/tmp",
        "-v",
        f"{host.docker_volume}:/var/lib/docker",
        "-v",
        f"{authorized}:/etc/ssh/zk0-lab-authorized_keys:ro",
        "--stop-signal",
        "SIGRTMIN+3",
    ]
    for cap in HOST_CAPS:
        argv += ["--cap-add", cap]
    if host.role == "client":
        argv += ["-v", f"{ensure_dataset(cfg, host)}:{DATASET_MOUNT}:ro"]
    if archive is not None:
        argv += ["-v", f"{archive.resolve()}:{ARCHIVE_MOUNT}:ro"]
    d.docker(*argv, cfg.host_image)
    return True


def wait_tcp(address: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise d.LabError(
        f"{what} at {address}:{port} did not answer within {timeout:.0f} s: see `docker logs` of its container."
    )


def record_host_keys(cfg: LabConfig, hosts: list[LabHost]) -> None:
    """Trust exactly the host keys of the containers we just made (no accept-new later)."""
    lines = []
    if cfg.known_hosts.exists():
        ours = {h.address for h in hosts}
        lines = [ln for ln in cfg.known_hosts.read_text().splitlines() if ln.split(" ", 1)[0] not in ours]
    for host in hosts:
        wait_tcp(host.address, 22, 90, f"SSH on lab host {host.name}")
        deadline = time.monotonic() + 60
        while True:
            scan = subprocess.run(
                ["ssh-keyscan", "-T", "5", "-t", "ed25519", host.address], capture_output=True, text=True, check=False
            )
            if scan.stdout.strip():
                break
            if time.monotonic() > deadline:
                raise d.LabError(f"ssh-keyscan {host.address} returned no key: see `docker logs {host.container}`.")
            time.sleep(1)
        lines += [ln for ln in scan.stdout.splitlines() if ln and not ln.startswith("#")]
    cfg.known_hosts.write_text("\n".join(lines) + "\n")


def ssh(
    cfg: LabConfig, host: LabHost, command: str, timeout: float = 300, check: bool = True, binary: bool = False
) -> subprocess.CompletedProcess:
    """Run a shell command on a lab host over SSH, as Ansible does."""
    argv = [
        "ssh",
        "-i",
        str(cfg.ssh_key),
        "-o",
        f"UserKnownHostsFile={cfg.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        f"root@{host.address}",
        command,
    ]
    result = subprocess.run(argv, capture_output=True, text=not binary, timeout=timeout, check=False)
    if check and result.returncode != 0:
        err = result.stderr if isinstance(result.stderr, str) else result.stderr.decode(errors="replace")
        raise d.LabError(f"ssh {host.name}: `{command}` failed (exit {result.returncode}): {err.strip()[-800:]}")
    return result


def prepare(cfg: LabConfig, archive: bool = False) -> None:
    """The slow, host-independent part of `up`: lab images, the registry holding the zk0 images
    and (`archive`) the air-gapped host's image file. `make test` runs it in the background."""
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    print("lab: images (host, registry)")
    build_images(cfg)
    ensure_network(cfg)
    ensure_registry(cfg)
    # The push (gzip, one core) and the archive (`docker save`, mostly disk) side by side.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        started = time.monotonic()
        saving = pool.submit(_timed, save_image_archive, cfg) if archive else None
        pushed = push_image(cfg)
        print(
            f"lab: registry {cfg.registry_address}:{cfg.registry_port} has {cfg.zk0_image}"
            f" ({'pushed in %.0f s' % (time.monotonic() - started) if pushed else 'already there'})"
        )
        if saving is not None:
            path, seconds = saving.result()
            print(f"lab: image archive {path} ({seconds:.0f} s, beside the push)")


def _timed(fn, *args):
    started = time.monotonic()
    return fn(*args), time.monotonic() - started


def up(cfg: LabConfig, with_spare: bool = False) -> list[LabHost]:
    """Everything the playbooks need to find: hosts reachable over SSH, the image in the registry."""
    hosts = list(cfg.hosts) + ([cfg.spare] if with_spare else [])
    prepare(cfg)
    ensure_ssh_key(cfg)
    created = [h for h in hosts if ensure_host(cfg, h)]
    record_host_keys(cfg, hosts)
    for host in hosts:
        print(f"lab: host {host.name:9} {host.address:13} {'created' if host in created else 'running'}")
    return hosts


def add_host(cfg: LabConfig, host: LabHost, archive: Path | None = None) -> None:
    ensure_host(cfg, host, archive)
    record_host_keys(cfg, [host])


def remove_host(cfg: LabConfig, host: LabHost) -> None:
    """Remove one host container and its Docker data (the disk its images used)."""
    d.docker("rm", "-f", host.container, check=False)
    d.docker("volume", "rm", "-f", host.docker_volume, check=False)


def down(cfg: LabConfig, keep_state: bool = False) -> list[str]:
    """Remove every container, volume and network labelled as the lab's; nothing else."""
    removed = []
    for kind, lister in (
        ("container", ["ps", "-aq"]),
        ("volume", ["volume", "ls", "-q"]),
        ("network", ["network", "ls", "-q"]),
    ):
        ids = d.docker(*lister, "--filter", f"label={LABEL}").stdout.split()
        if not ids:
            continue
        if kind == "container":
            d.docker("rm", "-f", "-v", *ids, timeout=300)
        else:
            d.docker(kind, "rm", *ids, timeout=300)
        removed += [f"{kind} {i[:12]}" for i in ids]
    # The pushed tag is the lab's too (it shares every layer with the zk0 image: no disk).
    for image in (cfg.zk0_image, cfg.proxy_image):
        pushed = f"127.0.0.1:{cfg.registry_push_port}/{image}"
        if d.exists("image", pushed):
            d.docker("rmi", pushed, check=False)
    if not keep_state and cfg.state_dir.exists():
        # The lab's CA, keys, datasets and results; the next `make demo` makes new ones.
        shutil.rmtree(cfg.state_dir)
    return removed
