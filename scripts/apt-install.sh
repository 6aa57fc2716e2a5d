#!/usr/bin/env bash
# Install Debian packages, one apt at a time: `make test` builds images in the background while
# the tiers install their tools, and apt refuses a second caller while another holds its locks.
#
#   scripts/apt-install.sh PACKAGE...
set -euo pipefail
[[ $# -gt 0 ]] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }
exec 9>/var/lock/zk0-apt.lock
flock 9
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
