"""zk0.deploy.ansible_run against real Ansible on this machine (local connection): the recap
and the failing task come from Ansible's events and agree with what Ansible printed; the
secret extra vars reach the play but no command line, log or leftover file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from zk0.deploy import ansible_run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SECRET = "zk0-ansible-run-test-secret"

# alpha stops in a loop; beta stops one task later. Before that both hosts get an ignored
# failure and a failure a block rescues, and write the secret (no_log) where the test reads it.
BOOK = """\
- name: A play that fails on purpose
  hosts: all
  gather_facts: false
  tasks:
    - name: Greet
      ansible.builtin.debug:
        msg: hello
    - name: Fail, ignored
      ansible.builtin.fail:
        msg: ignored failure
      ignore_errors: true
    - name: A failure that a block rescues
      block:
        - name: Fail inside the block
          ansible.builtin.fail:
            msg: rescued failure
      rescue:
        - name: Recover
          ansible.builtin.debug:
            msg: recovered
    - name: Write the secret that came as an extra var
      ansible.builtin.copy:
        content: "{{ zk0_test_token }}"
        dest: "{{ zk0_out }}/{{ inventory_hostname }}.token"
        mode: "0600"
      no_log: true
    - name: Stop alpha
      ansible.builtin.fail:
        msg: "alpha stops at {{ item }}: {{ zk0_reason }}"
      loop: [one, two]
      when: inventory_hostname == 'alpha' and item == 'two'
    - name: Stop beta
      ansible.builtin.fail:
        msg: beta stops
      when: inventory_hostname == 'beta'
"""


def _inventory(path: Path, ansible: Path, hosts: dict[str, dict]) -> Path:
    python = str(ansible.parent / "python")  # the Python that runs Ansible has what its modules need
    local = {"ansible_connection": "local", "ansible_python_interpreter": python}
    path.write_text(json.dumps({"all": {"hosts": {name: {**local, **hv} for name, hv in hosts.items()}}}))
    return path


def _printed_recap(log: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP Ansible printed: the oracle for the recap read from events."""
    lines = log.split("PLAY RECAP", 1)[1].splitlines()[1:]
    return {
        line.split()[0]: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)} for line in lines if "ok=" in line
    }


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where each run's private directory is made (and must be gone from afterwards)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_a_failing_play_reports_the_first_host_to_stop_and_the_recap_from_events(
    ansible: Path, tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "book.yml").write_text(BOOK)
    out = tmp_path / "out"
    out.mkdir()
    inventory = _inventory(tmp_path / "inventory.json", ansible, {"alpha": {}, "beta": {}})
    started: list[tuple[int, str]] = []
    sigint = signal.getsignal(signal.SIGINT)

    result = ansible_run.playbook(
        ansible,
        Path("book.yml"),  # relative: read from cwd
        [inventory],
        tmp_path / "logs" / "run.log",
        cwd=tmp_path,
        extra_vars={"zk0_test_token": SECRET, "zk0_out": str(out), "zk0_reason": "on purpose"},
        echo=True,
        on_task=lambda number, name: started.append((number, name)),
    )

    log = (tmp_path / "logs" / "run.log").read_text()
    assert not result.ok and result.rc != 0
    # The recap from the stats event is the one Ansible printed, with Ansible's names.
    assert result.recap == _printed_recap(log), log[-2000:]
    for host in ("alpha", "beta"):
        assert result.recap[host]["failed"] == 1 and result.recap[host]["unreachable"] == 0
        assert result.recap[host]["ignored"] == 1 and result.recap[host]["rescued"] == 1
    # Neither the ignored nor the rescued failure is the one reported, nor beta's later one.
    assert result.failure == ansible_run.Failure("Stop alpha", "alpha", "alpha stops at two: on purpose")
    assert result.problem == "task 'Stop alpha' failed on alpha: alpha stops at two: on purpose"
    # Progress and output: every task once, in order; the log is also what went to stdout.
    assert [name for _, name in started] == result.tasks and [n for n, _ in started] == list(range(1, 8))
    assert result.tasks[0] == "Greet" and result.tasks[-1] == "Stop beta"
    printed = capsys.readouterr().out
    assert "TASK [Stop alpha]" in printed and printed.strip() in log
    # The secret reached the play (through the extra-vars file) and nothing else.
    assert (out / "alpha.token").read_text() == SECRET and (out / "beta.token").read_text() == SECRET
    command = log.splitlines()[0]
    assert command.startswith(f"$ {ansible} -i {inventory}") and " -e @" in command, command
    assert SECRET not in log
    assert (tmp_path / "logs" / "run.log").stat().st_mode & 0o777 == 0o600
    assert not list(private_tmp.iterdir())  # the private data directory is gone
    assert signal.getsignal(signal.SIGINT) is sigint  # Ctrl-C acts as before once the run is over


def test_an_unreachable_host_is_reported_and_ad_hoc_results_come_per_host(
    ansible: Path, tmp_path: Path, private_tmp: Path
) -> None:
    hosts = {
        "here": {},
        # Nothing listens on port 1: SSH fails at once, without any prompt.
        "nowhere": {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1},
    }
    inventory = _inventory(tmp_path / "inventory.json", ansible, hosts)
    book = tmp_path / "book.yml"
    book.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Touch every host\n      ansible.builtin.ping:\n"
    )
    password = "zk0-become-password-for-the-test"  # Ansible asks for it at the start; nothing needs it
    result = ansible_run.playbook(
        ansible, book, [inventory], tmp_path / "play.log", cwd=tmp_path, check=True, become_password=password
    )
    assert not result.ok and result.failure is not None
    assert (result.failure.host, result.failure.task, result.failure.unreachable) == (
        "nowhere",
        "Touch every host",
        True,
    )
    assert "could not reach nowhere" in result.problem and result.failure.message
    assert result.recap["nowhere"]["unreachable"] == 1 and result.recap["here"]["ok"] == 1
    log = (tmp_path / "play.log").read_text()
    assert "--check" in log.splitlines()[0] and "--ask-become-pass" in log.splitlines()[0]
    assert password not in log

    adhoc = ansible_run.adhoc(
        ansible.parent / "ansible",
        inventory,
        "ansible.builtin.command",
        "sh -c 'echo out; echo err >&2; exit 3'",
        cwd=tmp_path,
        become_password=password,
    )
    assert adhoc.rc != 0
    here, nowhere = adhoc.results["here"], adhoc.results["nowhere"]
    assert (here["rc"], here["stdout"], here["stderr"]) == (3, "out", "err")
    assert nowhere.get("unreachable") and "rc" not in nowhere and nowhere["msg"]
    assert not list(private_tmp.iterdir())


@pytest.fixture
def terminal_ctrl_c():
    """Ctrl-C as in a terminal, whatever started the tests: a shell's background job starts with
    SIGINT ignored, and Python then keeps it ignored instead of raising KeyboardInterrupt."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("terminal_ctrl_c")
def test_ctrl_c_stops_ansible_cleans_up_and_then_interrupts(ansible: Path, tmp_path: Path, private_tmp: Path) -> None:
    inventory = _inventory(tmp_path / "inventory.json", ansible, {"here": {}})
    book = tmp_path / "slow.yml"
    book.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Wait\n      ansible.builtin.command: sleep 60\n"
    )

    def interrupt_soon(_number: int, _name: str) -> None:
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        ansible_run.playbook(ansible, book, [inventory], tmp_path / "slow.log", cwd=tmp_path, on_task=interrupt_soon)
    assert time.monotonic() - started < 45  # the task was not waited for
    assert "User interrupted execution" in (tmp_path / "slow.log").read_text()  # Ansible stopped itself
    assert not list(private_tmp.iterdir())
    # Neither ansible-playbook nor its worker (a session of its own) is left running the play.
    left = subprocess.run(["pgrep", "-f", str(book)], capture_output=True, text=True, check=False)
    assert left.stdout.strip() == "", left.stdout
