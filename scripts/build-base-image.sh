#!/usr/bin/env bash
# Build a local Python 3.12 base image (Debian 12 "bookworm" + CPython 3.12 under /usr/local),
# the same layout as python:3.12-slim-bookworm, for hosts that cannot pull from a registry
# (CI, `make demo`). Production builds use the registry image instead (docker/Dockerfile's
# BASE_IMAGE default).
#
#   scripts/build-base-image.sh [IMAGE]      default IMAGE: zk0-base:py3.12-bookworm
#
# Recipe: debootstrap a minbase bookworm root from the host's Debian mirror, copy in the
# host's CPython 3.12 build (scripts/find-python.sh; Debian 12 ships only 3.11), drop its test
# suite, tkinter, static library and any site-packages other than pip, then `docker import`.
# Cached: when an image with the same recipe hash label exists, nothing is rebuilt.
# Needs root (debootstrap) and a running Docker engine (scripts/ensure-docker.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${1:-zk0-base:py3.12-bookworm}
DOCKER=${DOCKER:-/usr/bin/docker}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# Runtime libraries CPython's extension modules link against (ssl, sqlite3, ctypes, bz2,
# lzma, readline, curses, uuid, nis), plus CA roots, tzdata and netbase like python:*-slim.
PACKAGES=ca-certificates,netbase,tzdata,libssl3,libsqlite3-0,libffi8,libbz2-1.0,liblzma5,zlib1g,libexpat1,libncursesw6,libreadline8,libuuid1,libtirpc3,libcrypt1

PYTHON=$(scripts/find-python.sh)
PY_PREFIX=$("$PYTHON" -c 'import sys; print(sys.base_prefix)')
PY_VERSION=$("$PYTHON" -c 'import platform; print(platform.python_version())')
RECIPE_HASH=$( { cat "$0"; echo "$PY_VERSION $PY_PREFIX $MIRROR $PACKAGES"; } | sha256sum | cut -c1-16)

existing=$("$DOCKER" image inspect "$IMAGE" \
    --format '{{ index .Config.Labels "org.zk0.base.recipe-hash" }}' 2>/dev/null || true)
if [[ "$existing" == "$RECIPE_HASH" ]]; then
    echo "base image $IMAGE is up to date (recipe $RECIPE_HASH)"
    exit 0
fi

command -v debootstrap >/dev/null 2>&1 || "$(dirname "$0")/apt-install.sh" debootstrap

previous=$("$DOCKER" image inspect "$IMAGE" --format '{{.Id}}' 2>/dev/null || true)
start=$(date +%s)
ROOTFS=$(mktemp -d /var/tmp/zk0-base.XXXXXX)
trap 'rm -rf --one-file-system "$ROOTFS"' EXIT

echo "debootstrap $SUITE (minbase) from $MIRROR ..."
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" \
    >"$ROOTFS.log" 2>&1 || { tail -30 "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"

cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF

echo "copying CPython $PY_VERSION from $PY_PREFIX into /usr/local ..."
stdlib=lib/python3.12
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/usr/local/lib" "$ROOTFS/usr/local/include"
cp -a "$PY_PREFIX/bin/python3.12" "$ROOTFS/usr/local/bin/"
cp -a "$PY_PREFIX"/lib/libpython3*.so* "$ROOTFS/usr/local/lib/"
cp -a "$PY_PREFIX/include/python3.12" "$ROOTFS/usr/local/include/"
tar -C "$PY_PREFIX" -cf - \
    --exclude="$stdlib/test" --exclude="$stdlib/idlelib" --exclude="$stdlib/tkinter" \
    --exclude="$stdlib/turtledemo" --exclude="$stdlib/lib-dynload/_tkinter*" \
    --exclude="$stdlib/lib-dynload/_test*" --exclude="$stdlib/lib-dynload/_xxtest*" \
    --exclude="$stdlib/config-3.12-*/*.a" --exclude="$stdlib/site-packages" \
    --exclude='__pycache__' "$stdlib" | tar -C "$ROOTFS/usr/local" -xf -
# site-packages: only pip, freshly installed from the stdlib's bundled wheel (ensurepip, no
# network). The host's own site-packages may carry local changes (.pth hooks, a pip whose
# certifi bundle trusts the host's local CAs) that must not reach an image.
mkdir -p "$ROOTFS/usr/local/$stdlib/site-packages"
ln -sf python3.12 "$ROOTFS/usr/local/bin/python3"
ln -sf python3 "$ROOTFS/usr/local/bin/python"
# The host build's rpath points at its own prefix; the loader falls back to ld.so.cache.
chroot "$ROOTFS" /sbin/ldconfig
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin \
    /usr/local/bin/python3 -m ensurepip --default-pip >/dev/null
rm -rf "$ROOTFS/root/.cache"

echo "checking the interpreter inside the root ..."
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin /usr/local/bin/python3 -c '
import ssl, sqlite3, ctypes, venv, bz2, lzma, zlib, uuid, hashlib, readline, decimal, json
import sys
assert sys.version_info[:2] == (3, 12), sys.version
assert sys.prefix == "/usr/local", sys.prefix
ctx = ssl.create_default_context()
assert ctx.cert_store_stats()["x509_ca"] > 0, "no CA roots"
ctypes.CDLL(None)
sqlite3.connect(":memory:").execute("select 1")
print("python", sys.version.split()[0], "|", ssl.OPENSSL_VERSION, "| sqlite", sqlite3.sqlite_version)
'
chroot "$ROOTFS" /usr/local/bin/python3 -m pip --version >/dev/null

# The host's locally added CAs (e.g. a TLS-intercepting proxy's) must not be in the image.
for ca in /usr/local/share/ca-certificates/*.crt; do
    [[ -f "$ca" ]] || continue
    line=$(grep -v -e '-----' "$ca" | sed -n 3p)
    if [[ -n "$line" ]] && grep -rqF -- "$line" "$ROOTFS"; then
        echo "refusing: a local CA of this host ($ca) was copied into the base root" >&2
        exit 1
    fi
done

# Trim like the slim images: no apt lists, package caches, docs or man pages.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/*
: >"$ROOTFS/etc/machine-id" 2>/dev/null || true

echo "importing $IMAGE ..."
tar -C "$ROOTFS" --numeric-owner -cf - . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PYTHON_VERSION='"$PY_VERSION" \
    --change 'LABEL org.zk0.base.recipe-hash='"$RECIPE_HASH" \
    --change 'LABEL org.opencontainers.image.title="zk0 local Python 3.12 base (Debian 12)"' \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >/dev/null
# Drop the base this one replaced unless something still uses it.
[[ -n "$previous" ]] && "$DOCKER" rmi "$previous" >/dev/null 2>&1 || true
"$DOCKER" image ls "$IMAGE" --format '{{.Repository}}:{{.Tag}} {{.Size}}'
echo "base image built in $(( $(date +%s) - start )) s"
