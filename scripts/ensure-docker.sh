#!/usr/bin/env bash
# Make sure a Docker engine answers on this host: install Debian's docker.io and start
# dockerd when none runs. Used by CI, the image build and the lab; safe to re-run.
set -euo pipefail

DOCKER=/usr/bin/docker   # docker.io's client has BuildKit built in; others may lack buildx

if ! command -v dockerd >/dev/null 2>&1; then
    "$(dirname "$0")/apt-install.sh" docker.io iptables ca-certificates
fi

if ! "$DOCKER" info >/dev/null 2>&1; then
    if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
        systemctl start docker
    else
        mkdir -p /var/log
        nohup dockerd >/var/log/dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do
        "$DOCKER" info >/dev/null 2>&1 && break
        sleep 1
    done
fi
"$DOCKER" info --format 'docker engine {{.ServerVersion}} ({{.Driver}}, cgroup v{{.CgroupVersion}})'
