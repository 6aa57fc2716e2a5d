"""Production deployment on Flower's runtime: PKI, launch flags, connections, enrollment, and
running the Ansible playbooks (ansible_run, for zk0bot and the lab)."""
