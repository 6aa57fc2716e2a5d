"""`zk0bot server backup|restore`: the server's zk0-backup archives, made and restored through
the superlink role's ``backup_now`` and ``restore`` entry points (zk0/bot/playbooks/).

The archive format has one source: roles/superlink/files/zk0_backup.py, the program the role
installs on the server. zk0bot loads that same file to read an archive's manifest before it
uploads anything, so a file that is not a zk0 backup is refused here, with no change on the
server.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from zk0.bot import playbook, server
from zk0.bot.errors import BotError, ExitCode
from zk0.bot.state import side_dir

BACKUP_PLAYBOOK = Path(__file__).parent / "playbooks" / "server-backup.yml"
RESTORE_PLAYBOOK = Path(__file__).parent / "playbooks" / "server-restore.yml"


@functools.cache
def backup_program() -> ModuleType:
    """roles/superlink/files/zk0_backup.py, as a module."""
    path = playbook.assets_dir() / "roles" / "superlink" / "files" / "zk0_backup.py"
    spec = importlib.util.spec_from_file_location("zk0_backup", path)
    if spec is None or spec.loader is None:
        raise BotError(f"cannot load {path}", "reinstall zk0bot", ExitCode.NOT_FOUND)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def target(host: str = "", ssh_port: int | None = None, ssh_key: Path | None = None) -> server.ServerSettings:
    """The server to act on: --host, or the one `zk0bot server start` saved."""
    saved = server.load_settings()
    if host:  # another host than the saved one gets the defaults, not the saved host's SSH settings
        same = saved if saved is not None and saved.host == host else None
        return server.merge(same, host=host, ssh_port=ssh_port, ssh_key=str(ssh_key) if ssh_key else "")
    if saved is None:
        raise BotError(
            "No server has been started from this machine yet",
            "run `zk0bot server start`, or name the server with --host user@address",
            ExitCode.NOT_CONFIGURED,
        )
    return saved


def _inventory(s: server.ServerSettings, name: str, role_vars: dict[str, object]) -> Path:
    # ansible_* connection settings given with --var at start (become method, interpreter...).
    connection = {k: v for k, v in s.extra_vars.items() if k.startswith("ansible_")}
    gv = {"superlink_config_dir": s.config_dir, **connection, **role_vars}
    return playbook.write_inventory(side_dir("server") / name, server.GROUP, s.target, gv)


def default_dest() -> Path:
    return side_dir("server") / "backups"


def backup(
    s: server.ServerSettings, dest: Path, ask_become_pass: bool = False, verbose: bool = False, status=None
) -> tuple[playbook.PlaybookResult, Path | None]:
    """Back up now and fetch the archive into ``dest``; returns the result and the new archive."""
    dest = dest.expanduser().resolve()
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    before = set(dest.glob("*.tar.gz"))
    inventory = _inventory(s, "backup-inventory.json", {"superlink_backup_fetch_dir": str(dest)})
    result = playbook.run_playbook(
        str(BACKUP_PLAYBOOK), inventory, side_dir("server") / "logs", None, False, ask_become_pass, verbose, status
    )
    new = sorted(set(dest.glob("*.tar.gz")) - before)
    return result, (new[-1] if new else None)


def read_manifest(archive: Path) -> dict:
    """The archive's manifest; a missing file or one that is not a zk0 backup is a BotError."""
    if not archive.is_file():
        raise BotError(f"No archive at {archive}", "give the path of a zk0 backup (.tar.gz)", ExitCode.NOT_FOUND)
    program = backup_program()
    try:
        return program.read_manifest(archive)
    except program.BackupError as err:
        raise BotError(err.problem, "give an archive that `zk0bot server backup` fetched", ExitCode.USAGE) from None


def restore(
    s: server.ServerSettings,
    archive: Path,
    check: bool = False,
    ask_become_pass: bool = False,
    verbose: bool = False,
    status=None,
) -> playbook.PlaybookResult:
    inventory = _inventory(s, "restore-inventory.json", {"superlink_restore_archive": str(archive.resolve())})
    return playbook.run_playbook(
        str(RESTORE_PLAYBOOK), inventory, side_dir("server") / "logs", None, check, ask_become_pass, verbose, status
    )
