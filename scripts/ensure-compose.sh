#!/usr/bin/env bash
# Make sure `docker compose` (Compose v2) works with /usr/bin/docker on this host.
# Debian 12 ships only Compose v1; Debian 13's docker-compose 2.26.1 package (the v2 CLI
# plugin, a static Go binary depending only on libc6 >= 2.34) installs cleanly on Debian 12.
# It is fetched from the Debian archive by its pinned SHA-256 and installed with dpkg.
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEB=docker-compose_2.26.1-4_amd64.deb
SHA256=47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea

if ! "$DOCKER" compose version >/dev/null 2>&1; then
    [[ "$(dpkg --print-architecture)" == amd64 ]] || { echo "ensure-compose: amd64 only" >&2; exit 1; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL -o "$tmp/$DEB" "$MIRROR/pool/main/d/docker-compose/$DEB"
    else
        wget -q -O "$tmp/$DEB" "$MIRROR/pool/main/d/docker-compose/$DEB"
    fi
    echo "$SHA256  $tmp/$DEB" | sha256sum -c --quiet
    ( flock 9; dpkg -i "$tmp/$DEB" >/dev/null ) 9>/var/lock/zk0-apt.lock  # see apt-install.sh
fi
"$DOCKER" compose version
