#!/usr/bin/env bash
# Build the zk0 image (docker/Dockerfile) as zk0:<version> and zk0:latest with BuildKit.
#
#   scripts/build-image.sh
#
# Environment:
#   BASE_IMAGE   base to build on; default: the local base made by scripts/build-base-image.sh
#                (no registry here). Production/CI with a registry: python:3.12-slim-bookworm.
#   ZK0_BUILD_CA CA bundle handed to the build as the BuildKit secret "extra_ca" (needed behind
#                a TLS-intercepting proxy); default: this host's bundle if present; "" = none.
#   ZK0_IMAGE    image name (default zk0)
# Docker: /usr/bin/docker (docker.io 20.10, BuildKit built in); a newer client without
# buildx cannot build with BuildKit.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-/usr/bin/docker}
export DOCKER DOCKER_BUILDKIT=1
ZK0_IMAGE=${ZK0_IMAGE:-zk0}
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -1)
ZK0_BUILD_CA=${ZK0_BUILD_CA-/etc/ssl/certs/ca-certificates.crt}

if [[ -z "${BASE_IMAGE:-}" ]]; then
    BASE_IMAGE=zk0-base:py3.12-bookworm
    scripts/build-base-image.sh "$BASE_IMAGE"
fi

args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "ZK0_VERSION=$VERSION")
source_url=$(git config --get remote.origin.url 2>/dev/null || true)
[[ "$source_url" == https://* ]] && args+=(--build-arg "ZK0_SOURCE=$source_url")
revision=$(git rev-parse HEAD 2>/dev/null || true)
[[ -n "$revision" ]] && args+=(--build-arg "ZK0_REVISION=$revision")
if [[ -n "$ZK0_BUILD_CA" && -s "$ZK0_BUILD_CA" ]]; then
    args+=(--secret "id=extra_ca,src=$ZK0_BUILD_CA")
fi

log=$(mktemp /tmp/zk0-image-build.XXXXXX.log)
echo "building $ZK0_IMAGE:$VERSION on $BASE_IMAGE (log: $log) ..."
previous=$("$DOCKER" image inspect "$ZK0_IMAGE:$VERSION" --format '{{.Id}}' 2>/dev/null || true)
start=$(date +%s)
if ! "$DOCKER" build --progress=plain -f docker/Dockerfile "${args[@]}" \
        -t "$ZK0_IMAGE:$VERSION" -t "$ZK0_IMAGE:latest" . >"$log" 2>&1; then
    tail -40 "$log"
    echo "image build failed (full log: $log)" >&2
    exit 1
fi
rm -f "$log"
# Drop the image this build replaced, when nothing else refers to it (no multi-GB leftovers).
current=$("$DOCKER" image inspect "$ZK0_IMAGE:$VERSION" --format '{{.Id}}')
if [[ -n "$previous" && "$previous" != "$current" ]]; then
    "$DOCKER" rmi "$previous" >/dev/null 2>&1 || true
fi
"$DOCKER" image ls "$ZK0_IMAGE:$VERSION" --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}'
echo "image built in $(( $(date +%s) - start )) s"

# The server stack's edge proxy (docker/proxy.Dockerfile): nginx-light on the same base.
PROXY_IMAGE=${ZK0_PROXY_IMAGE:-zk0-proxy}
start=$(date +%s)
if ! "$DOCKER" build -q -f docker/proxy.Dockerfile --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --build-arg "ZK0_VERSION=$VERSION" -t "$PROXY_IMAGE:$VERSION" -t "$PROXY_IMAGE:latest" . >"$log" 2>&1; then
    tail -40 "$log"
    echo "proxy image build failed" >&2
    exit 1
fi
rm -f "$log"
"$DOCKER" image ls "$PROXY_IMAGE:$VERSION" --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}'
echo "proxy image built in $(( $(date +%s) - start )) s"
