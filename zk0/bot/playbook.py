"""Find the shipped playbooks and Ansible, write an inventory, run ansible-playbook for real.

Decisions:

- **Playbooks travel with the package.** The wheel carries ``roles/``, ``playbooks/`` and
  ``ansible.cfg`` under ``zk0/_ops/`` (hatch ``force-include`` in pyproject.toml), so
  ``pipx install`` gives an operator the same roles the admin uses. In a source checkout
  (editable install) they are read from the checkout itself. ``$ZK0BOT_ASSETS`` overrides both.
- **Ansible** comes from the ``operator`` extra (``pip install 'zk0[operator]'``: the
  ``ansible`` package pinned as in requirements/ops.in, with the collections the roles use).
  Looked up in order: ``$ZK0BOT_ANSIBLE_PLAYBOOK``, next to this Python (pipx venv), PATH,
  a checkout's ``.venv-ops``.
- **The inventory is generated** (JSON, which Ansible's yaml inventory plugin reads) with one
  host: ``localhost`` over ``ansible_connection: local``, or a machine over SSH
  (``--host user@addr``). Non-secret variables go into the inventory; secrets into the run's
  0600 extra-vars file, in a private directory removed after the run.
- **Running** is zk0.deploy.ansible_run's (ansible-runner): the full ansible-playbook output
  goes to a log file; the terminal shows a spinner with the current task (or everything with
  ``--verbose``) and, on failure, the failed task and its message, read from Ansible's events.
"""

from __future__ import annotations

import fnmatch
import getpass
import json
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from zk0.bot.errors import BotError, ExitCode
from zk0.bot.state import write_private
from zk0.deploy import ansible_run
from zk0.deploy.ansible_run import PlaybookResult

ANSIBLE_VERSION_HINT = (
    "pipx install 'zk0[operator]' (scripts/install-zk0bot.sh does it), or `make setup-ops` in a checkout"
)


# ---------------------------------------------------------------- assets and tools


def assets_dir() -> Path:
    """Directory holding ``playbooks/``, ``roles/`` and ``ansible.cfg``."""
    import zk0

    package = Path(zk0.__file__).resolve().parent
    candidates = []
    if os.environ.get("ZK0BOT_ASSETS"):
        candidates.append(Path(os.environ["ZK0BOT_ASSETS"]).expanduser())
    candidates += [package / "_ops", package.parent]
    for path in candidates:
        if (path / "playbooks" / "client.yml").is_file() and (path / "roles" / "supernode").is_dir():
            return path
    raise BotError(
        f"The zk0 playbooks are not installed (looked in {', '.join(map(str, candidates))})",
        "reinstall zk0bot from a wheel built by this project, or set ZK0BOT_ASSETS to a zk0 checkout",
        ExitCode.NOT_FOUND,
    )


def _tool(name: str, env_var: str) -> Path:
    import zk0

    explicit = os.environ.get(env_var)
    candidates = [Path(explicit)] if explicit else []
    candidates.append(Path(sys.executable).parent / name)
    if found := shutil.which(name):
        candidates.append(Path(found))
    candidates.append(Path(zk0.__file__).resolve().parents[1] / ".venv-ops" / "bin" / name)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise BotError(f"{name} is not installed", f"install Ansible with {ANSIBLE_VERSION_HINT}", ExitCode.MISSING_TOOL)


def ansible_playbook() -> Path:
    return _tool("ansible-playbook", "ZK0BOT_ANSIBLE_PLAYBOOK")


def ansible_adhoc() -> Path:
    """The ``ansible`` command that sits next to the ansible-playbook in use."""
    sibling = ansible_playbook().parent / "ansible"
    if sibling.is_file():
        return sibling
    return _tool("ansible", "ZK0BOT_ANSIBLE")


# ---------------------------------------------------------------- targets and inventory


@dataclass(frozen=True)
class Target:
    """The machine a playbook runs against: this one, or ``[user@]address`` over SSH."""

    spec: str = ""  # "" = this machine
    ssh_port: int | None = None
    ssh_key: Path | None = None

    @property
    def local(self) -> bool:
        return not self.spec

    @property
    def name(self) -> str:
        """Inventory hostname: also the name of the fetched ``<name>.pub``."""
        return "localhost" if self.local else self.spec.rsplit("@", 1)[-1]

    def host_vars(self) -> dict[str, object]:
        if self.local:
            # The system Python, not whatever `python3` is first on PATH (pyenv, a venv): the
            # roles install the Python libraries their modules need with apt, for it.
            return {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
        user, _, address = self.spec.rpartition("@")
        if not re.fullmatch(r"[A-Za-z0-9_.:\-\[\]]+", address) or (user and not re.fullmatch(r"[\w.\-]+", user)):
            raise BotError(
                f"--host {self.spec!r} is not [user@]address", "use e.g. --host root@10.0.0.5", ExitCode.USAGE
            )
        hv: dict[str, object] = {"ansible_host": address.strip("[]")}
        if user:
            hv["ansible_user"] = user
        if self.ssh_port:
            hv["ansible_port"] = self.ssh_port
        if self.ssh_key:
            hv["ansible_ssh_private_key_file"] = str(Path(self.ssh_key).expanduser().resolve())
        return hv


# Names that hold secrets: never on a command line nor in settings.json (plus every option the
# roles' argument specs mark no_log).
SECRET_NAME_PATTERNS = ("*_api_key", "*_token", "*auth_key*", "*password*", "*_secret*", "*_passphrase*")


def _playbook_path(playbook: str) -> Path:
    return Path(playbook) if Path(playbook).is_absolute() else assets_dir() / "playbooks" / playbook


def _roles_and_switches(book: Path, seen: set[Path] | None = None) -> tuple[set[str], set[str]]:
    """The roles a playbook uses (``roles:``, include_role/import_role, imported playbooks) and
    the play-level switches its role entries test (``when: zk0_server_nvidia | default(false)``)."""
    import yaml

    seen = seen if seen is not None else set()
    if book in seen or not book.is_file():
        return set(), set()
    seen.add(book)
    roles: set[str] = set()
    switches: set[str] = set()
    for play in yaml.safe_load(book.read_text(encoding="utf-8")) or []:
        imported = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
        if imported:
            more = _roles_and_switches(book.parent / imported, seen)
            roles |= more[0]
            switches |= more[1]
            continue
        for entry in play.get("roles") or []:
            roles.add(entry if isinstance(entry, str) else entry.get("role") or entry.get("name"))
            when = entry.get("when", "") if isinstance(entry, dict) else ""
            for cond in [when] if isinstance(when, str) else when:
                switches |= set(re.findall(r"\b([a-z][a-z0-9_]*)\s*\|\s*default\(", str(cond)))
        for task in (play.get("pre_tasks") or []) + (play.get("tasks") or []) + (play.get("post_tasks") or []):
            for key in ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role"):
                if isinstance(task.get(key), dict) and task[key].get("name"):
                    roles.add(task[key]["name"])
    return roles, switches


def role_variables(playbook: str) -> tuple[dict[str, bool], list[str]]:
    """The variables ``--var`` may set for ``playbook``: every option in the meta/argument_specs.yml
    of the roles it uses (name -> no_log), plus its play-level switches; and those roles."""
    import yaml

    roles, switches = _roles_and_switches(_playbook_path(playbook))
    known: dict[str, bool] = dict.fromkeys(switches, False)
    for role in sorted(roles):
        spec = assets_dir() / "roles" / role / "meta" / "argument_specs.yml"
        if not spec.is_file():
            continue
        for entry in (yaml.safe_load(spec.read_text(encoding="utf-8")) or {}).get("argument_specs", {}).values():
            for name, option in (entry.get("options") or {}).items():
                known[name] = known.get(name, False) or bool((option or {}).get("no_log"))
    return known, sorted(roles)


def _secret_name(name: str, known: dict[str, bool]) -> bool:
    return known.get(name, False) or any(fnmatch.fnmatch(name.lower(), p) for p in SECRET_NAME_PATTERNS)


def check_var_name(
    name: str, playbook: str, known: dict[str, bool] | None = None, roles: list[str] | None = None
) -> None:
    """Refuse a ``--var`` name that holds a secret or that no role of ``playbook`` knows."""
    if known is None or roles is None:
        known, roles = role_variables(playbook)
    if _secret_name(name, known):
        raise BotError(
            f"--var {name} holds a secret, and --var values are saved in settings.json and shown in process lists",
            "put it in a 0600 file given with --secrets-file (HF_TOKEN=, WANDB_API_KEY=, TAILSCALE_AUTH_KEY= lines), "
            "or in an ansible-vault file when you run the playbooks yourself",
            ExitCode.USAGE,
        )
    if name not in known and not name.startswith("ansible_"):
        names = ", ".join(sorted(n for n in known if not _secret_name(n, known)))
        raise BotError(
            f"--var {name} is not a variable of {Path(playbook).name} (roles {', '.join(roles)})",
            f"use one of: {names}; or an ansible_* connection variable",
            ExitCode.USAGE,
        )


def known_saved_vars(saved: dict[str, object], playbook: str) -> tuple[dict[str, object], list[str]]:
    """Saved ``--var`` values that are still allowed, and the names dropped (unknown or secret)."""
    known, roles = role_variables(playbook)
    kept, dropped = {}, []
    for name, value in saved.items():
        try:
            check_var_name(name, playbook, known, roles)
            kept[name] = value
        except BotError:
            dropped.append(name)
    return kept, dropped


def parse_vars(pairs: list[str], playbook: str | None = None) -> dict[str, object]:
    """``--var KEY=VALUE`` (VALUE parsed as JSON when it is JSON: numbers, booleans, lists).

    With ``playbook``, KEY must be a variable of that playbook's roles and must not hold a secret."""
    out: dict[str, object] = {}
    known, roles = role_variables(playbook) if playbook and pairs else ({}, [])
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise BotError(f"--var {pair!r} is not KEY=VALUE", "write it as --var name=value", ExitCode.USAGE)
        if playbook:
            check_var_name(key, playbook, known, roles)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def connection_vars(extra_vars: dict[str, object]) -> dict[str, object]:
    """The ``ansible_*`` values among saved ``--var`` ones: how to reach the host (SSH options, a
    user, an interpreter), which the status, logs and stop commands need as much as a start."""
    return {name: value for name, value in extra_vars.items() if name.startswith("ansible_")}


def write_inventory(path: Path, group: str, target: Target, group_vars: dict[str, object]) -> Path:
    inventory = {"all": {"children": {group: {"hosts": {target.name: target.host_vars()}, "vars": group_vars}}}}
    write_private(path, json.dumps(inventory, indent=2, sort_keys=True) + "\n")
    return path


# ---------------------------------------------------------------- running (through zk0.deploy.ansible_run)


def _environment(assets: Path) -> dict[str, str]:
    return {
        "ANSIBLE_CONFIG": str(assets / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(assets / "roles"),
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }


def _become_password(ask: bool) -> str | None:
    """Asked here, before the run: Ansible runs on ansible-runner's pty, where its own prompt
    would reach no one."""
    return getpass.getpass("BECOME password: ") if ask else None


def run_playbook(
    playbook: str,
    inventory: Path,
    log_dir: Path,
    secrets: dict[str, object] | None = None,
    check: bool = False,
    ask_become_pass: bool = False,
    verbose: bool = False,
    status=None,
) -> PlaybookResult:
    """Run ``playbooks/<playbook>`` (or a playbook given by absolute path, such as zk0bot's own
    ``zk0/bot/playbooks/``) against ``inventory``; the whole output goes to a log file, the
    secrets only to the run's private extra-vars file."""
    assets = assets_dir()
    binary = ansible_playbook()
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = log_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{Path(playbook).stem}{'-check' if check else ''}.log"
    return ansible_run.playbook(
        binary,
        _playbook_path(playbook),
        [inventory],
        log,
        cwd=assets,
        env=_environment(assets),
        check=check,
        extra_vars=secrets,
        become_password=_become_password(ask_become_pass),
        echo=verbose,
        on_task=(lambda number, name: status.update(f"[{number}] {name}")) if status is not None else None,
    )


def run_remote(
    inventory: Path, argv: list[str], chdir: str, become: bool = True, ask_become_pass: bool = False
) -> dict[str, dict]:
    """Run one command on the inventory's hosts with ``ansible -m command``; each host's result
    (rc, stdout, stderr, or msg when the command did not run) from its event."""
    assets = assets_dir()
    result = ansible_run.adhoc(
        ansible_adhoc(),
        inventory,
        "ansible.builtin.command",
        f"{shlex.join(argv)} chdir={shlex.quote(chdir)}",
        cwd=assets,
        env=_environment(assets),
        become=become,
        become_password=_become_password(ask_become_pass),
    )
    if not result.results:
        raise BotError(
            f"ansible could not reach the host ({result.tail.strip()[-300:]})",
            "check --host, SSH access and sudo rights",
            ExitCode.UNREACHABLE,
        )
    return result.results
