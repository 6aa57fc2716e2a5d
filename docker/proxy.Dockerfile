# zk0 edge proxy: Debian's nginx-light with zk0's configuration (zk0/deploy/proxy/), the only
# process of the server stack that faces the network. See docs/SECURITY.md.
#
#   DOCKER_BUILDKIT=1 docker build -f docker/proxy.Dockerfile --build-arg ZK0_VERSION=<version> -t zk0-proxy:<version> .
# <version> is pyproject.toml's [project] version (scripts/build-image.sh reads it from there).
# Without a registry, build on the local base: --build-arg BASE_IMAGE=zk0-base:py3.12-bookworm
# (`make image` does). Any Debian 12 image with python3 works: the renderer is standard library.

ARG BASE_IMAGE=python:3.12-slim-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* /usr/share/doc/* /usr/share/man/* \
 && groupadd --system --gid 49999 zk0 \
 && useradd --system --uid 49999 --gid 49999 --no-create-home --shell /usr/sbin/nologin zk0
COPY zk0/deploy/proxy/render.py zk0/deploy/proxy/nginx.conf.template /opt/zk0-proxy/

USER 49999:49999
EXPOSE 8000 8001
# Renders /run/zk0-proxy/nginx.conf (a tmpfs in the stack) from ZK0_PROXY_* and the admin
# token secret, then execs nginx in the foreground.
ENTRYPOINT ["python3", "/opt/zk0-proxy/render.py"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "/opt/zk0-proxy/render.py", "--health"]

# No default (it would go stale): scripts/build-image.sh passes pyproject.toml's version.
ARG ZK0_VERSION
RUN test -n "$ZK0_VERSION" || { echo "pass --build-arg ZK0_VERSION=<pyproject.toml version>" >&2; exit 1; }
LABEL org.opencontainers.image.title="zk0-proxy" \
      org.opencontainers.image.description="nginx edge proxy for the zk0 server stack: Fleet API public, Control API behind a token" \
      org.opencontainers.image.version="${ZK0_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
