"""Run the project's real playbooks against the lab hosts (zk0.deploy.ansible_run: the recap and
the failing task come from Ansible's events)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lab.config import ROOT, LabConfig
from lab.docker import LabError
from zk0.deploy import ansible_run


def ansible_playbook() -> str:
    for candidate in (ROOT / ".venv-ops" / "bin" / "ansible-playbook", Path(sys.prefix) / "bin" / "ansible-playbook"):
        if candidate.exists():
            return str(candidate)
    raise LabError("ansible-playbook not found: run `make setup-ops` (make demo does).")


def playbook(
    cfg: LabConfig,
    name: str,
    limit: str | None = None,
    extra_inventory: list[Path] | None = None,
    echo: bool = True,
    log_name: str | None = None,
    timeout: float = 3600,
) -> dict[str, dict[str, int]]:
    """`ansible-playbook playbooks/<name> -i inventory/lab`; returns the recap per host.

    The full output goes to .lab/logs/<log_name>.log (and to the terminal when `echo`).
    Raises LabError naming the failed task, its host and message, and the log, when the play fails.
    """
    binary = Path(ansible_playbook())
    env = {
        "ZK0_LAB_DIR": str(cfg.state_dir.resolve()),
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{binary.parent}:{os.environ.get('PATH', '')}",
        # Each task's seconds in the log, and the slowest at the end: where the lab's minutes go.
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
    }
    log_path = cfg.state_dir / "logs" / f"{log_name or Path(name).stem}.log"
    result = ansible_run.playbook(
        binary,
        ROOT / "playbooks" / name,
        [cfg.inventory, *(extra_inventory or [])],
        log_path,
        cwd=ROOT,
        env=env,
        limit=limit,
        echo=echo,
        timeout=timeout,
    )
    if not result.ok:
        raise LabError(
            f"ansible-playbook {name} failed (exit {result.rc}; {summary(result.recap)}): "
            f"{result.problem} (the whole log: {log_path})"
        )
    return result.recap


def summary(recap: dict[str, dict[str, int]]) -> str:
    return (
        ", ".join(
            f"{host} ok={r['ok']} changed={r['changed']} failed={r['failed']}" for host, r in sorted(recap.items())
        )
        or "no recap"
    )
