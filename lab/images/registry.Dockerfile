# The lab's container registry: Debian's packaged CNCF Distribution registry (docker-registry),
# on the same systemd-less Debian 13 userland as the hosts. Plain HTTP on the lab's private
# network; the lab hosts list it under insecure-registries (inventory/lab).
ARG SYSTEMD_IMAGE=zk0-systemd:trixie
FROM ${SYSTEMD_IMAGE}
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY registry.yml /etc/docker/registry/config.yml
EXPOSE 5000
ENTRYPOINT ["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"]
