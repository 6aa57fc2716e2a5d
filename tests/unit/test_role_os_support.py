"""The roles refuse an OS they do not support with their own message (what they run on, what
to do), not with include_vars' "file not found": each role runs in Ansible check mode against
this machine posing as two unsupported hosts (facts set by set_fact), Fedora 41 (no vars file:
the fallback) and Debian 11 (a vars file, an unsupported release). Each stops at its assert,
before any task that could change the machine. Needs .venv-ops (`make setup-ops`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = REPO / ".venv-ops" / "bin" / "ansible-playbook"

HOSTS = {
    "fedora41": {
        "distribution": "Fedora",
        "distribution_release": "",
        "distribution_version": "41",
        "os_family": "RedHat",
        "architecture": "x86_64",
        "kernel": "6.11.4-301.fc41.x86_64",
    },
    "debian11": {
        "distribution": "Debian",
        "distribution_release": "bullseye",
        "distribution_version": "11.11",
        "os_family": "Debian",
        "architecture": "x86_64",
        "kernel": "5.10.0-32-amd64",
    },
}
# Each role's words for the fix; the host is named in the same message.
FIX = {
    "docker": "Run it on Debian 12/13 or Ubuntu 22.04/24.04 with docker_install_source: docker",
    "nvidia": "Run it on Debian 12/13 or Ubuntu 22.04/24.04",
    "tailscale": "Run it on Debian 12/13 or Ubuntu 22.04/24.04",
    "superlink": "needs a supported host (Ubuntu 22.04/24.04, Debian 12/13; this is",
    "supernode": "needs a supported host (Ubuntu 22.04/24.04, Debian 12/13; this is",
    "monitoring": "needs a supported host (Debian 12/13, Ubuntu 22.04/24.04; this is",
}
SHOWN_AS = {"fedora41": "Fedora 41", "debian11": "Debian bullseye"}

PLAYBOOK = """\
- name: Apply the roles on hosts posing as unsupported systems (check mode)
  hosts: all
  gather_facts: false
  vars:
    nvidia_gpu_present: true
    tailscale_enabled: true
    superlink_image: zk0:test
    supernode_image: zk0:test
    supernode_superlink_address: link.example.org:8000
  tasks:
    - name: Pose as the host's system (cacheable, so the values land in ansible_facts)
      ansible.builtin.set_fact:
        distribution: "{{ fake_os.distribution }}"
        distribution_release: "{{ fake_os.distribution_release }}"
        distribution_version: "{{ fake_os.distribution_version }}"
        os_family: "{{ fake_os.os_family }}"
        architecture: "{{ fake_os.architecture }}"
        kernel: "{{ fake_os.kernel }}"
        cacheable: true

    - name: Apply each role
      ansible.builtin.include_tasks: apply.yml
      loop: "{{ zk0_roles }}"
      loop_control:
        loop_var: zk0_role
"""
APPLY = """\
- name: Apply {{ zk0_role }}
  block:
    - name: Include {{ zk0_role }}
      ansible.builtin.include_role:
        name: "{{ zk0_role }}"

    - name: Report that {{ zk0_role }} went through
      ansible.builtin.debug:
        msg: {role: "{{ zk0_role }}", task: null, refusal: null}
  rescue:
    - name: Report where {{ zk0_role }} stopped
      ansible.builtin.debug:
        msg:
          role: "{{ zk0_role }}"
          task: "{{ ansible_failed_task.name }}"
          refusal: "{{ ansible_failed_result.msg }}"
"""


@pytest.fixture(scope="module")
def stops(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    """(host, role) -> {task, refusal} from one ansible-playbook run over both hosts."""
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip("needs .venv-ops (make setup-ops; `make test` makes it in lint)")
    work = tmp_path_factory.mktemp("os-support")
    (work / "play.yml").write_text(PLAYBOOK)
    (work / "apply.yml").write_text(APPLY)
    inventory = {
        "all": {
            "hosts": {
                name: {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                    "fake_os": facts,
                }
                for name, facts in HOSTS.items()
            },
            "vars": {"zk0_roles": list(FIX)},
        }
    }
    (work / "inventory.json").write_text(json.dumps(inventory))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": "",
        "ANSIBLE_HOME": str(work / "ansible-home"),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
    }
    result = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "--check", "-i", "inventory.json", "play.yml"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:] or result.stdout[-3000:]
    found: dict[tuple[str, str], dict] = {}
    for task in json.loads(result.stdout)["plays"][0]["tasks"]:
        if task["task"]["name"].startswith("Report "):
            for host, res in task["hosts"].items():
                if isinstance(res.get("msg"), dict):
                    found[(host, res["msg"]["role"])] = res["msg"]
    return found


@pytest.mark.parametrize("role", list(FIX))
@pytest.mark.parametrize("host", list(HOSTS))
def test_role_refuses_an_unsupported_os_with_its_own_message(stops, host: str, role: str) -> None:
    stop = stops[(host, role)]
    assert stop["refusal"], f"{role} ran through on {SHOWN_AS[host]}"
    assert stop["task"].startswith("Check "), stop
    assert FIX[role] in stop["refusal"] and SHOWN_AS[host] in stop["refusal"], stop["refusal"]
    assert "Could not find" not in stop["refusal"]
