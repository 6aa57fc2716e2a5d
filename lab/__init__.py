"""The zk0 lab: a federation on one machine, provisioned by the real playbooks.

Three Debian 13 container "hosts" (one server, two clients; a spare fourth for enrollment
tests) with their own addresses on a private Docker network, reached by Ansible over SSH,
and a container registry on the same network that serves the zk0 image (the production pull
path). `make demo` drives it; tests/lab is the full-stack test on the same lab.

    python -m lab up        # images, network, registry, hosts, datasets
    python -m lab converge  # ansible-playbook playbooks/site.yml -i inventory/lab
    python -m lab run       # flwr run, progress per round, summary table
    python -m lab down      # remove everything the lab made (and only that)
"""
