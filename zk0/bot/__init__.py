"""zk0bot: the command line for node operators and the federation admin (`zk0bot --help`).

Modules, one job each: ``cli`` (typer wiring and rendering), ``client`` / ``server`` (the
playbooks' variables and the stack control), ``runs`` (``flwr run`` with progress), ``keys``,
``doctor``, ``playbook`` (assets, Ansible, inventory, running), ``state`` (files and
secrets), ``errors`` (exit codes). Imports stay light (no torch, no lerobot) so the command
starts in well under a second; flwr is imported only by the commands that talk to a SuperLink.
"""
