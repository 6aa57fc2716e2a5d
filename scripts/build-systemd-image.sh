#!/usr/bin/env bash
# Build the local Debian 13 (trixie) image with systemd as PID 1 that the Molecule role
# tests run on. No container registry is needed: debootstrap from a Debian mirror, then
# `docker import`. Cached: when the tag for this script's hash exists, nothing is rebuilt.
#
#   scripts/build-systemd-image.sh            # builds or reuses zk0-systemd:trixie
#   ZK0_SYSTEMD_IMAGE=name:tag scripts/...    # other name (Molecule reads the same variable)
#   ZK0_DEBIAN_MIRROR=http://...              # other mirror (default deb.debian.org)
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
IMAGE=${ZK0_SYSTEMD_IMAGE:-zk0-systemd:trixie}
MIRROR=${ZK0_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=trixie
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

if ! command -v debootstrap >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

workdir=$(mktemp -d /tmp/zk0-systemd-image.XXXXXX)
trap 'rm -rf "$workdir"' EXIT
rootfs=$workdir/rootfs

echo "debootstrap $SUITE from $MIRROR (a few minutes)"
start=$(date +%s)
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
    >"$workdir/debootstrap.log" 2>&1 || { tail -40 "$workdir/debootstrap.log" >&2; exit 1; }

# Full suite list (updates and security) in deb822 form, as a fresh trixie install has.
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
