#!/usr/bin/env bash
# Build a local Debian image with systemd as PID 1 that the Molecule role tests (and the
# lab's hosts) run on: Debian 13 (trixie) by default, Debian 12 (bookworm) on request. No
# container registry is needed: debootstrap from a Debian mirror, then `docker import`.
# Cached: when the tag for this script's hash exists, nothing is rebuilt.
#
#   scripts/build-systemd-image.sh            # builds or reuses zk0-systemd:trixie
#   scripts/build-systemd-image.sh bookworm   # builds or reuses zk0-systemd:bookworm
#   ZK0_SYSTEMD_IMAGE=name:tag scripts/...    # other name for the image built
#   ZK0_DEBIAN_MIRROR=http://...              # other mirror (default deb.debian.org)
set -euo pipefail

SUITE=${1:-trixie}
case "$SUITE" in
    trixie|bookworm) ;;
    *) echo "build-systemd-image: suite $SUITE: only trixie and bookworm are built" >&2; exit 2 ;;
esac
DOCKER=${DOCKER:-/usr/bin/docker}
IMAGE=${ZK0_SYSTEMD_IMAGE:-zk0-systemd:$SUITE}
MIRROR=${ZK0_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Packages Ansible and the role tests need on a bare host: python3 (+ apt bindings) for
# modules, sudo for become, ca-certificates and gnupg for repository keys.
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,gnupg,iproute2,procps,curl

script_hash=$(sha256sum "$0" | cut -c1-12)
repo=${IMAGE%:*}
hashed_tag="$repo:$SUITE-$script_hash"

if "$DOCKER" image inspect "$hashed_tag" >/dev/null 2>&1; then
    "$DOCKER" tag "$hashed_tag" "$IMAGE"
    echo "systemd image $IMAGE is current ($hashed_tag), not rebuilt"
    exit 0
fi

command -v debootstrap >/dev/null 2>&1 || "$(dirname "$0")/apt-install.sh" debootstrap

workdir=$(mktemp -d /tmp/zk0-systemd-image.XXXXXX)
trap 'rm -rf "$workdir"' EXIT
rootfs=$workdir/rootfs

echo "debootstrap $SUITE from $MIRROR (a few minutes)"
start=$(date +%s)
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
    >"$workdir/debootstrap.log" 2>&1 || { tail -40 "$workdir/debootstrap.log" >&2; exit 1; }

# Full suite list (updates and security) in deb822 form, as a fresh install has.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# Units that stall or fail in a container: first-boot wizard, kernel modules, network wait
# (docker.service waits 2 min on it otherwise), consoles.
for unit in systemd-firstboot.service systemd-modules-load.service \
        systemd-networkd-wait-online.service getty.target console-getty.service \
        systemd-udevd.service systemd-udev-trigger.service sys-kernel-config.mount \
        sys-kernel-debug.mount sys-kernel-tracing.mount; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
# Each container gets its own machine id on first boot.
echo uninitialized >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
# Package lists are dropped (smaller image) and dated 1970 so that apt `cache_valid_time`
# always refreshes them on the first run.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/tmp/* "$rootfs"/var/log/*.log
mkdir -p "$rootfs/var/lib/apt/lists/partial"
touch -d @0 "$rootfs/var/lib/apt/lists"
# Keep documentation out of later installs inside the container.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
EOF

tar -C "$rootfs" --numeric-owner -c . | "$DOCKER" import \
    --change 'ENV container=docker' \
    --change 'CMD ["/sbin/init"]' \
    --message "zk0 Debian $SUITE systemd image, build script $script_hash" \
    - "$hashed_tag" >/dev/null
"$DOCKER" tag "$hashed_tag" "$IMAGE"
# Drop this repo's images built by earlier versions of the script (only those).
"$DOCKER" images --format '{{.Repository}}:{{.Tag}}' "$repo" \
    | grep -E "^$repo:$SUITE-[0-9a-f]{12}$" | grep -vx "$hashed_tag" \
    | xargs -r "$DOCKER" rmi >/dev/null 2>&1 || true
echo "built $IMAGE ($hashed_tag) in $(( $(date +%s) - start )) s"
