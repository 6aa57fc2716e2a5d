"""Run Ansible (a playbook, or one module on every host) through ansible-runner, for zk0bot and the lab.

Decisions:

- **The caller's Ansible.** ansible-runner starts the ``ansible-playbook`` / ``ansible`` the caller
  found (``binary=``: zk0bot's lookup in zk0.bot.playbook, the lab's ``.venv-ops``), on a pty, with
  its callback plugin (``awx_display``) wrapping Ansible's default one: the human output is the one
  Ansible prints, and every result also arrives as a structured event.
- **Results come from events, never from the human text.** The recap per host is the
  ``playbook_on_stats`` event (named as in Ansible's PLAY RECAP: ok, changed, unreachable, failed,
  skipped, rescued, ignored); the failure is read from ``runner_on_failed`` and
  ``runner_on_unreachable`` events; the exit status is the process's.
- **Which failure is reported.** Failures with ``ignore_errors`` do not count. A host stops at its
  last failure (an earlier one was rescued by a block, or Ansible would have stopped there), and
  only hosts the recap shows as failed or unreachable stopped. The report names the host that
  stopped first: its failing task, the host and the task's message.
- **Output**: each event's text goes to the log file (0600, first line the command) as it arrives,
  and to stdout too with ``echo``.
- **Nothing secret stays behind.** Each run gets its own private data directory (``mkdtemp``: 0700)
  holding the extra-vars file (0600, passed as ``-e @file``, so no value is on the command line),
  the runner's settings and its artifacts (the ``command`` file records the environment); events are
  not written there, facts are not cached there, and the directory is removed when the run ends.
- **No prompt reaches a terminal** (the pty is ansible-runner's): a become password is answered
  with the value the caller asked for.
- **Stopping** (Ctrl-C or SIGTERM to this process, or the timeout): they reach only this process
  (the pty is its own session), which asks ansible-playbook to stop as a terminal's Ctrl-C would
  (SIGINT: Ansible stops its workers, which run in sessions of their own, out of reach of the
  runner's kill of its process group); the runner kills what is left after ``STOP_GRACE_S``.
  Then the private directory is removed, and a caught signal acts as it would have
  (KeyboardInterrupt for Ctrl-C).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# The stats event's names -> the names of Ansible's PLAY RECAP.
RECAP_NAMES = {
    "ok": "ok",
    "changed": "changed",
    "dark": "unreachable",
    "failures": "failed",
    "skipped": "skipped",
    "rescued": "rescued",
    "ignored": "ignored",
}
RESULT_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped")
BECOME_PROMPT = r"^BECOME password.*:\s*$"
STOP_GRACE_S = 10  # after Ansible was asked to stop, before its process group is killed
MESSAGE_LIMIT = 1500
TAIL_LINES = 15


@dataclass(frozen=True)
class Failure:
    """The task that stopped a host, and what it said."""

    task: str
    host: str
    message: str
    unreachable: bool = False

    def __str__(self) -> str:
        what = "could not reach" if self.unreachable else "failed on"
        return f"task '{self.task}' {what} {self.host}: {self.message}"


@dataclass
class PlaybookResult:
    rc: int
    log: Path | None = None
    tasks: list[str] = field(default_factory=list)  # every task started, in order
    recap: dict[str, dict[str, int]] = field(default_factory=dict)
    failure: Failure | None = None
    tail: str = ""  # the last output lines: all a run that failed before its first task has to say
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def problem(self) -> str:
        """One line on why the run failed ("" when it did not)."""
        if self.ok:
            return ""
        if self.timed_out:
            return f"timed out; the last output: {self.tail}"
        return str(self.failure) if self.failure else self.tail or f"ansible exited with {self.rc}"


@dataclass
class AdhocResult:
    rc: int
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> the module's result
    tail: str = ""


def recap_of(stats: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Counts per host from a ``playbook_on_stats`` event (a host missing from a count has 0)."""
    counts = {name: stats.get(key) or {} for key, name in RECAP_NAMES.items()}
    hosts = set(stats.get("processed") or {}).union(*counts.values())
    return {host: {name: int(per_host.get(host, 0)) for name, per_host in counts.items()} for host in sorted(hosts)}


def message_of(res: Mapping[str, Any], failed_items: Sequence[str] = ()) -> str:
    """What a failed or unreachable result says: its argument errors, the messages of its failed
    loop items (``failed_items``, from their own events) or its msg, and the command's stderr;
    on one line."""
    if "censored" in res:  # no_log
        parts = [str(res["censored"])]
    elif res.get("argument_errors"):  # validate_argument_spec and role argument specs
        parts = [str(error) for error in res["argument_errors"]]
    elif failed_items:
        parts = list(failed_items)
    else:
        parts = [str(res.get("msg") or "")]
        if res.get("stderr"):
            parts.append(f"stderr: {str(res['stderr'])[-400:]}")
    return " ".join("; ".join(p for p in parts if p).split())[:MESSAGE_LIMIT]


class _Events:
    """ansible-runner's event handler: writes the output and keeps what the result needs."""

    def __init__(self, log: IO[str] | None, echo: bool, on_task: Callable[[int, str], None] | None) -> None:
        self.log, self.echo, self.on_task = log, echo, on_task
        self.tasks: list[str] = []
        self.task_names: dict[str, str] = {}
        self.recap: dict[str, dict[str, int]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.stops: dict[str, tuple[int, Failure]] = {}  # host -> its last failure, numbered
        self.failed_items: dict[tuple[str, str], list[str]] = {}  # (host, task) -> failed loop items' messages
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.count = 0
        self.pid: int | None = None  # ansible-playbook's (its callbacks report it)

    def __call__(self, event: dict[str, Any]) -> bool:
        self.count += 1
        self._write((event.get("stdout") or "").replace("\r\n", "\n").replace("\r", ""))
        kind, data = event.get("event"), event.get("event_data") or {}
        if kind == "playbook_on_start":
            self.pid = event.get("pid")
        elif kind == "playbook_on_task_start":
            name = data.get("name") or data.get("task") or "?"
            self.task_names[data.get("task_uuid") or data.get("uuid") or ""] = name
            self.tasks.append(name)
            if self.on_task is not None:
                self.on_task(len(self.tasks), name)
        elif kind == "playbook_on_stats":
            self.recap = recap_of(data)
        elif kind == "runner_item_on_failed":
            key = (str(data.get("host")), str(data.get("task_uuid")))
            self.failed_items.setdefault(key, []).append(message_of(data.get("res") or {}))
        elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            host = str(data.get("host") or "?")
            task = self.task_names.get(data.get("task_uuid") or "") or _task_label(data)
            message = message_of(data.get("res") or {}, self.failed_items.get((host, str(data.get("task_uuid"))), ()))
            self.stops[host] = (self.count, Failure(task, host, message, kind == "runner_on_unreachable"))
        if kind in RESULT_EVENTS and data.get("host"):
            self.results[str(data["host"])] = dict(data.get("res") or {})
        return False  # the runner keeps no copy of the event on disk

    def _write(self, text: str) -> None:
        if not text:
            return
        if self.log is not None:
            self.log.write(text + "\n")
            self.log.flush()
        if self.echo:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        self.tail.extend(line for line in text.splitlines() if line.strip())

    def failure(self) -> Failure | None:
        stopped = {h for h, c in self.recap.items() if c["failed"] or c["unreachable"]}
        found = [stop for host, stop in self.stops.items() if not self.recap or host in stopped]
        return min(found, key=lambda stop: stop[0])[1] if found else None


def _task_label(data: Mapping[str, Any]) -> str:
    task = str(data.get("task") or "?")
    return f"{data['role']} : {task}" if data.get("role") else task


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


class _Stopper:
    """The runner's cancel callback: on a caught signal or past the deadline it asks Ansible to
    stop (SIGINT), and tells the runner to kill it once ``STOP_GRACE_S`` have passed."""

    def __init__(self, events: _Events, timeout: float | None) -> None:
        self.events = events
        self.deadline = time.monotonic() + timeout if timeout else None
        self.caught: list[int] = []
        self.timed_out = False
        self.asked_at: float | None = None

    def __call__(self) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.timed_out = True
        if not (self.caught or self.timed_out):
            return False
        if self.asked_at is None:
            self.asked_at = time.monotonic()
            if self.events.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.events.pid, signal.SIGINT)
        return time.monotonic() - self.asked_at > STOP_GRACE_S


@contextlib.contextmanager
def _signals_caught(caught: list[int]) -> Iterator[None]:
    """While the run lasts, Ctrl-C and SIGTERM are noted in ``caught`` (the runner's cancel
    callback reads it) instead of acting; the previous handlers are back afterwards."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda number, _frame: caught.append(number))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _run(
    binary: Path,
    args: list[str],
    events: _Events,
    *,
    cwd: Path,
    env: Mapping[str, str] | None,
    extra_vars: Mapping[str, object] | None,
    passwords: dict[str, str],
    timeout: float | None,
    adhoc: bool = False,
) -> tuple[int, bool]:
    """Run ``binary args`` under ansible-runner in a private data directory; (rc, timed out)."""
    from ansible_runner import Runner, RunnerConfig

    private = Path(tempfile.mkdtemp(prefix="zk0-ansible-"))
    stopper = _Stopper(events, timeout)
    try:
        (private / "env").mkdir(mode=0o700)
        # No stdout copy in the artifacts (the caller's log has it); poll each second so a
        # Ctrl-C is acted on promptly.
        _write_private(private / "env" / "settings", json.dumps({"suppress_output_file": True, "pexpect_timeout": 1}))
        if extra_vars:
            _write_private(private / "env" / "extravars", json.dumps(dict(extra_vars)))
        envvars = {
            "ANSIBLE_NOCOLOR": "1",  # the pty would make Ansible colour its output
            "ANSIBLE_FORCE_COLOR": "0",
            # ansible-runner turns host key checking off unless it is set: keep Ansible's default.
            "ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True"),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        if adhoc:  # the runner's callback reports ad-hoc results only when told it is one
            envvars.update(AD_HOC_COMMAND_ID="1", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
        config = RunnerConfig(
            private_data_dir=str(private),
            project_dir=str(cwd),
            binary=str(binary),
            cmdline=shlex.join(args),
            envvars=envvars,
            passwords=passwords,
            fact_cache_type="memory",
            quiet=True,
        )
        config.prepare()
        if events.log is not None:
            events.log.write(f"$ {shlex.join(config.command)}\n")
        runner = Runner(config, event_handler=events, cancel_callback=stopper)
        with _signals_caught(stopper.caught):
            runner.run()
        return int(runner.rc if runner.rc is not None else 1), stopper.timed_out
    finally:
        shutil.rmtree(private, ignore_errors=True)
        if stopper.caught:  # Ansible has stopped and nothing is left behind: now the signal acts
            signal.raise_signal(stopper.caught[0])


def _become(password: str | None) -> tuple[list[str], dict[str, str]]:
    return (["--ask-become-pass"], {BECOME_PROMPT: password}) if password is not None else ([], {})


def playbook(
    binary: Path,
    book: Path,
    inventories: Sequence[Path],
    log: Path,
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    limit: str | None = None,
    check: bool = False,
    extra_vars: Mapping[str, object] | None = None,
    become_password: str | None = None,
    echo: bool = False,
    on_task: Callable[[int, str], None] | None = None,
    timeout: float | None = None,
) -> PlaybookResult:
    """``ansible-playbook -i INVENTORY... BOOK`` (``--limit``, ``--check --diff``) in ``cwd`` (relative
    paths are read from there); the output goes to ``log``; ``extra_vars`` (secrets too) reach
    Ansible only through the private extra-vars file."""
    cwd = cwd.resolve()
    args = [arg for inventory in inventories for arg in ("-i", str(cwd / inventory))]
    if limit:
        args += ["--limit", limit]
    if check:
        args += ["--check", "--diff"]
    become, passwords = _become(become_password)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch(mode=0o600)
    log.chmod(0o600)  # also when it was there before
    with log.open("w", encoding="utf-8") as fh:
        events = _Events(fh, echo, on_task)
        rc, timed_out = _run(
            binary,
            [*args, *become, str(cwd / book)],
            events,
            cwd=cwd,
            env=env,
            extra_vars=extra_vars,
            passwords=passwords,
            timeout=timeout,
        )
    return PlaybookResult(
        rc=rc,
        log=log,
        tasks=events.tasks,
        recap=events.recap,
        failure=events.failure() if rc else None,
        tail="\n".join(events.tail),
        timed_out=timed_out,
    )


def adhoc(
    binary: Path,
    inventory: Path,
    module: str,
    module_args: str,
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    pattern: str = "all",
    become: bool = False,
    become_password: str | None = None,
    timeout: float | None = None,
) -> AdhocResult:
    """``ansible PATTERN -i INVENTORY -m MODULE -a ARGS``; each host's result from its event."""
    ask, passwords = _become(become_password)
    cwd = cwd.resolve()
    # An ad-hoc run's working directory is the private one: the inventory path must be absolute.
    args = [pattern, "-i", str(cwd / inventory), "-m", module, "-a", module_args, *ask]
    if become:
        args.append("--become")
    events = _Events(None, False, None)
    rc, _ = _run(
        binary, args, events, cwd=cwd, env=env, extra_vars=None, passwords=passwords, timeout=timeout, adhoc=True
    )
    return AdhocResult(rc=rc, results=events.results, tail="\n".join(events.tail))
