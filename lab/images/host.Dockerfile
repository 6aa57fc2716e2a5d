# A lab "host": the project's Debian 13 systemd image (scripts/build-systemd-image.sh) plus an
# SSH server, so that Ansible reaches it exactly as it reaches a real machine. Root logs in
# with the lab's key only (mounted at run time); each container makes its own host keys on
# first boot, and `python -m lab up` records them in the lab's known_hosts.
ARG SYSTEMD_IMAGE=zk0-systemd:trixie
FROM ${SYSTEMD_IMAGE}
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null \
    && apt-get clean && rm -rf /var/lib/apt/lists/* && mkdir -p /var/lib/apt/lists/partial \
    && touch -d @0 /var/lib/apt/lists \
    && rm -f /etc/ssh/ssh_host_*
COPY host-sshd.conf /etc/ssh/sshd_config.d/zk0-lab.conf
COPY host-keygen.service /etc/systemd/system/zk0-lab-hostkeys.service
COPY host-docker.conf /etc/systemd/system/docker.service.d/zk0-lab.conf
RUN systemctl enable ssh.service zk0-lab-hostkeys.service >/dev/null 2>&1
