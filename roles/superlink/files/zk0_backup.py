#!/usr/bin/env python3
"""zk0-backup: consistent backups of the zk0 server, and their restore (installed by roles/superlink).

    zk0-backup [--config /etc/zk0/server/backup.json] backup [--json]
    zk0-backup [--config ...] restore ARCHIVE [--json]

Python 3.10+ standard library only: it runs on the server host, as root (the systemd timer,
or `zk0bot server backup|restore` through Ansible). An archive (``<stack>-<UTC time>.tar.gz``,
0600, in the 0700 backup directory) holds:

- ``manifest.json`` first (format, time, host, the database's tables and row counts);
- ``db/superlink.db``: a copy made with SQLite's online backup API from a read-only
  connection, so it is consistent while the SuperLink writes (WAL) and it is checked with
  PRAGMA integrity_check before it is archived;
- ``pki/``: ca.pem, superlink.pem, superlink.key. Never ca.key (it lives on the control
  machine); not the admin token nor the SuperExec secret either (the role installs those
  again from their own sources);
- ``outputs/``: the outputs volume (round metrics, plots, wandb files) with, per run, only
  the newest complete checkpoint (``checkpoints: latest``, what a resume needs) or every one
  (``all``); half-written ``.round_N.partial`` directories and symlinks are left out.

Files keep their numeric owners and modes (the stack runs as uid 49999). Restore checks the
whole archive first (names, types, the database's integrity, the federation CA), stops the
stack, keeps the current database and PKI files in ``pre-restore-<time>/`` in the backup
directory, puts the archive's files in place (the database replaced, stale -wal/-shm files
removed, outputs files written over, nothing else there deleted), checks the database again
and starts the stack.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import io
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

FORMAT = 1
MANIFEST = "manifest.json"
DB_NAME = "superlink.db"
DB_MEMBER = f"db/{DB_NAME}"
# Restore needs these to bring the same server identity back. ca.key is never one of them.
PKI_FILES = ("ca.pem", "superlink.pem", "superlink.key")
ARCHIVE_RE = re.compile(r"^(?P<stack>.+)-(?P<stamp>\d{8}T\d{6}\.\d{3}Z)\.tar\.gz$")
ROUND_RE = re.compile(r"^round_(\d+)$")
CHECKPOINT_STATE = "zk0_state.json"  # zk0/federation/checkpoints.py: a complete checkpoint has it
UTC = dt.timezone.utc  # noqa: UP017 (dt.UTC is 3.11+; Ubuntu 22.04 hosts have 3.10)
COMPRESSLEVEL = 3  # checkpoints are float tensors: higher levels cost minutes and save little


class BackupError(Exception):
    """A problem the operator can fix: what went wrong, and what to do."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem, self.fix = problem, fix


@dataclass
class Config:
    backup_dir: Path
    stack: str = "zk0-server"
    keep: int = 7
    checkpoints: str = "latest"
    pki_dir: Path = Path("/etc/zk0/server/pki")
    state: dict = field(default_factory=dict)  # {"volume": NAME} or {"path": DIR}: holds superlink.db
    outputs: dict = field(default_factory=dict)  # the same, for the outputs volume
    stop: list[str] = field(default_factory=list)  # argv that stops the stack ([]: none)
    start: list[str] = field(default_factory=list)
    stack_dir: str = "/"  # where stop/start run

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            paths = {"backup_dir": Path(raw["backup_dir"]), "pki_dir": Path(raw["pki_dir"])}
            cfg = cls(**{**raw, **paths, "keep": int(raw.get("keep", 7))})
        except FileNotFoundError:
            raise BackupError(f"no settings file {path}", "run the superlink role (zk0bot server start)") from None
        except (ValueError, KeyError, TypeError) as err:
            raise BackupError(f"{path} is not valid backup settings ({err})", "run the superlink role again") from None
        if cfg.keep < 1 or cfg.checkpoints not in ("latest", "all"):
            raise BackupError(f"{path}: keep must be >= 1 and checkpoints latest or all", "fix the role variables")
        return cfg


def resolve(spec: dict, what: str) -> Path:
    """The host directory of a volume (``docker volume inspect``) or a plain path."""
    if "path" in spec:
        path = Path(spec["path"])
    else:
        found = subprocess.run(
            ["docker", "volume", "inspect", "--format", "{{.Mountpoint}}", spec["volume"]],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode != 0:
            raise BackupError(
                f"the {what} volume {spec['volume']} does not exist ({found.stderr.strip()[:200]})",
                "start the server stack once first (zk0bot server start)",
            )
        path = Path(found.stdout.strip())
    if not path.is_dir():
        raise BackupError(f"the {what} directory {path} is missing", "start the server stack once first")
    return path


@contextlib.contextmanager
def locked(backup_dir: Path) -> Iterator[None]:
    """One backup or restore at a time (the timer and a manual run may meet)."""
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    backup_dir.chmod(0o700)
    with (backup_dir / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another backup or restore holds {backup_dir}/.lock", "wait for it to end") from None
        yield


# ---------------------------------------------------------------- the database


def copy_database(source: Path, dest: Path) -> None:
    """SQLite's online backup from a read-only connection: one consistent snapshot while the
    SuperLink writes (WAL). Run as root, SQLite gives any -wal/-shm file it creates the
    database's owner, so the SuperLink can still open them."""
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)  # all pages in one step: one read transaction
        finally:
            dst.close()
            src.close()
    except sqlite3.Error as err:
        raise BackupError(
            f"could not copy the database {source} to {dest} ({err})", f"check the free space in {dest.parent}"
        ) from None


def check_database(path: Path) -> dict[str, int]:
    """PRAGMA integrity_check must say ok; returns the row count of every table."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = [row[0] for row in con.execute("PRAGMA integrity_check")]
        if result != ["ok"]:
            raise BackupError(f"the database {path} is damaged ({'; '.join(result)[:300]})", "use another archive")
        tables = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    except sqlite3.DatabaseError as err:
        raise BackupError(f"{path} is not a readable SQLite database ({err})", "use another archive") from None
    finally:
        con.close()


# ---------------------------------------------------------------- backup


def output_files(root: Path, checkpoints: str) -> Iterator[Path]:
    """Directories and regular files under ``root`` to archive (see the module docstring)."""
    for here, dirs, files in os.walk(root):
        current = Path(here)
        dirs[:] = sorted(d for d in dirs if not (d.startswith(".") and d.endswith(".partial")))
        dirs[:] = [d for d in dirs if not (current / d).is_symlink()]
        if current.name == "checkpoints" and checkpoints == "latest":
            complete = [(int(m.group(1)), d) for d in dirs if (m := ROUND_RE.match(d))]
            complete = [(n, d) for n, d in complete if (current / d / CHECKPOINT_STATE).is_file()]
            newest = max(complete)[1] if complete else None
            dirs[:] = [d for d in dirs if not ROUND_RE.match(d) or d == newest]
        yield current
        for name in sorted(files):
            path = current / name
            if path.is_file() and not path.is_symlink():
                yield path


def archive_name(stack: str, now: dt.datetime) -> str:
    return f"{stack}-{now.strftime('%Y%m%dT%H%M%S')}.{now.microsecond // 1000:03d}Z.tar.gz"


def archives(cfg: Config) -> list[Path]:
    """This stack's archives in the backup directory, oldest first."""
    found = [p for p in cfg.backup_dir.iterdir() if (m := ARCHIVE_RE.match(p.name)) and m["stack"] == cfg.stack]
    return sorted(found, key=lambda p: p.name[len(cfg.stack) :])  # the UTC stamp orders them


def prune(cfg: Config) -> list[Path]:
    """Remove all but the newest ``keep`` archives; nothing else in the directory is touched."""
    old = archives(cfg)[: -cfg.keep]
    for path in old:
        path.unlink()
    return old


def _add_file(tar: tarfile.TarFile, path: Path, arcname: str, like: os.stat_result | None = None) -> bool:
    """Add ``path`` (with the owner and mode of ``like`` when given); False when it vanished."""
    try:
        info = tar.gettarinfo(str(path), arcname)
        if like is not None:
            info.uid, info.gid, info.mode = like.st_uid, like.st_gid, like.st_mode & 0o7777
        info.uname = info.gname = ""  # numeric owners: uid 49999 has no name on the host
        if info.isdir():
            tar.addfile(info)
            return True
        with path.open("rb") as handle:
            tar.addfile(info, handle)
        return True
    except FileNotFoundError:  # a checkpoint replaced while we read it
        return False


def backup(cfg: Config, prune_old: bool = True) -> dict:
    state, outputs = resolve(cfg.state, "state"), resolve(cfg.outputs, "outputs")
    live_db = state / DB_NAME
    if not live_db.is_file():
        raise BackupError(f"no database at {live_db}", "start the server stack once first (zk0bot server start)")
    for leftover in cfg.backup_dir.glob(".staging-*"):  # from a run that was killed
        shutil.rmtree(leftover)
    for leftover in cfg.backup_dir.glob(f".{cfg.stack}-*.partial"):
        leftover.unlink()
    now = dt.datetime.now(UTC)
    name = archive_name(cfg.stack, now)
    final = cfg.backup_dir / name
    partial = cfg.backup_dir / f".{name}.partial"
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=cfg.backup_dir) as staging:
        db_copy = Path(staging) / DB_NAME
        copy_database(live_db, db_copy)
        rows = check_database(db_copy)
        manifest = {
            "format": FORMAT,
            "created": now.isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "stack": cfg.stack,
            "database": {"integrity": "ok", "rows": rows},
            "pki": [f for f in PKI_FILES if (cfg.pki_dir / f).is_file()],
            "checkpoints": cfg.checkpoints,
        }
        skipped = 0
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=COMPRESSLEVEL) as tar:
                data = json.dumps(manifest, indent=1).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode, info.mtime = len(data), 0o600, int(now.timestamp())
                tar.addfile(info, io.BytesIO(data))
                _add_file(tar, db_copy, DB_MEMBER, like=live_db.stat())
                for pki_file in manifest["pki"]:
                    _add_file(tar, cfg.pki_dir / pki_file, f"pki/{pki_file}")
                for path in output_files(outputs, cfg.checkpoints):
                    rel = path.relative_to(outputs).as_posix()
                    skipped += not _add_file(tar, path, "outputs" if rel == "." else f"outputs/{rel}")
                raw.flush()
                os.fsync(raw.fileno())
            partial.replace(final)  # complete archives only ever have their final name
        except OSError as err:
            partial.unlink(missing_ok=True)
            raise BackupError(
                f"could not write {final} ({err})", f"free space in {cfg.backup_dir} or move it"
            ) from None
    removed = prune(cfg) if prune_old else []
    return {"archive": str(final), "bytes": final.stat().st_size, "removed": [str(p) for p in removed],
            "skipped": skipped, "rows": rows}  # fmt: skip


# ---------------------------------------------------------------- restore


def member_kind(member: tarfile.TarInfo) -> str:
    """'manifest', 'db', 'pki' or 'outputs' for an allowed member; BackupError otherwise."""
    path = PurePosixPath(member.name)
    parts = path.parts
    bad = path.is_absolute() or not parts or ".." in parts or not (member.isfile() or member.isdir())
    kind = ""
    if not bad and member.isfile():
        if member.name == MANIFEST:
            kind = "manifest"
        elif member.name == DB_MEMBER:
            kind = "db"
        elif len(parts) == 2 and parts[0] == "pki" and parts[1] in PKI_FILES:
            kind = "pki"
    if not bad and parts[0] == "outputs":
        kind = "outputs"
    if not kind:
        raise BackupError(f"the archive holds {member.name!r}, which a zk0 backup never does", "use a zk0 backup")
    return kind


def read_manifest(archive: Path) -> dict:
    """The manifest (the archive's first member): quick, it reads only the archive's start."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            first = tar.next()
            handle = tar.extractfile(first) if first is not None and first.name == MANIFEST else None
            manifest = json.loads(handle.read()) if handle else None
    except (OSError, tarfile.TarError, ValueError) as err:
        raise BackupError(f"{archive} is not a readable zk0 backup ({err})", "give a zk0-backup archive") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive} is not a zk0 backup of format {FORMAT}", "give an archive zk0-backup made")
    return manifest


def _place(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    """Write a file member at ``dest`` atomically, with its owner, mode and time."""
    tmp = dest.with_name(f".{dest.name}.zk0-restore")
    source = tar.extractfile(member)
    assert source is not None  # member_kind let only regular files through
    with source, tmp.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
    _own(tmp, member)
    os.utime(tmp, (member.mtime, member.mtime))
    tmp.replace(dest)


def _own(path: Path, member: tarfile.TarInfo) -> None:
    if os.geteuid() == 0:
        os.chown(path, member.uid, member.gid)
    path.chmod(member.mode & 0o777)  # no setuid/setgid/sticky bits from an archive


def _verify(archive: Path, staging: Path, pki_dir: Path) -> tuple[dict, dict[str, int]]:
    """Read the whole archive once before anything is stopped: every member allowed, the
    database intact (extracted to ``staging``), the CA the same as this server's."""
    manifest = read_manifest(archive)
    seen = set()
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            kind = member_kind(member)
            seen.add(kind)
            if kind in ("db", "pki"):
                _place(tar, member, staging / PurePosixPath(member.name).name)
    if "db" not in seen:
        raise BackupError(f"{archive} holds no {DB_MEMBER}", "use a complete zk0 backup")
    if (staging / "superlink.pem").is_file() != (staging / "superlink.key").is_file():
        raise BackupError(f"{archive} holds only one of superlink.pem and superlink.key", "use a complete zk0 backup")
    rows = check_database(staging / DB_NAME)
    here, there = pki_dir / "ca.pem", staging / "ca.pem"
    if here.is_file() and there.is_file() and here.read_bytes().strip() != there.read_bytes().strip():
        raise BackupError(
            f"the archive's ca.pem is another federation's CA than {here}",
            "restore onto a server set up with the same CA (zk0bot server start from the machine holding its ca.key)",
        )
    return manifest, rows


def _run(argv: list[str], cwd: str, what: str) -> None:
    if not argv:
        return
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(
            f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-400:]}",
            "look at `docker compose logs` in the server's config directory (zk0bot server logs)",
        )


def _keep_current(cfg: Config, live_db: Path, stamp: str) -> Path:
    """The database and PKI files the restore replaces, kept in ``pre-restore-<stamp>/``."""
    keep = cfg.backup_dir / f"pre-restore-{stamp}"
    keep.mkdir(mode=0o700)
    if live_db.is_file():
        copy_database(live_db, keep / DB_NAME)
    for name in PKI_FILES:
        if (cfg.pki_dir / name).is_file():
            shutil.copy2(cfg.pki_dir / name, keep / name)
    return keep


def _put_back(archive: Path, state: Path, outputs: Path, pki_dir: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            kind = member_kind(member)
            rel = PurePosixPath(member.name)
            if kind == "db":
                for stale in ("-wal", "-shm", "-journal"):  # a stale WAL would be replayed onto the copy
                    (state / f"{DB_NAME}{stale}").unlink(missing_ok=True)
                _place(tar, member, state / DB_NAME)
            elif kind == "pki":
                _place(tar, member, pki_dir / rel.name)
            elif kind == "outputs":
                dest = outputs.joinpath(*rel.parts[1:])
                if member.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                    _own(dest, member)
                else:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    _place(tar, member, dest)


def restore(cfg: Config, archive: Path) -> dict:
    if not archive.is_file():
        raise BackupError(f"no archive at {archive}", "give the path of a .tar.gz that zk0-backup made")
    state, outputs = resolve(cfg.state, "state"), resolve(cfg.outputs, "outputs")
    live_db = state / DB_NAME
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=cfg.backup_dir) as staging:
        manifest, rows = _verify(archive, Path(staging), cfg.pki_dir)
        _run(cfg.stop, cfg.stack_dir, "stopping the stack")
        kept = _keep_current(cfg, live_db, dt.datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ"))
        try:
            _put_back(archive, state, outputs, cfg.pki_dir)
            if check_database(live_db) != rows:
                raise BackupError(f"the restored {live_db} differs from the archive's copy", "run the restore again")
        except (BackupError, OSError, tarfile.TarError) as err:
            raise BackupError(
                f"restore stopped half way, with the stack down ({err})",
                f"the replaced database and PKI files are in {kept}; fix the cause and run the restore again",
            ) from None
    _run(cfg.start, cfg.stack_dir, "starting the stack")
    return {"archive": str(archive), "created": manifest.get("created"), "from_host": manifest.get("host"),
            "rows": rows, "kept": str(kept)}  # fmt: skip


# ---------------------------------------------------------------- command line


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zk0-backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("/etc/zk0/server/backup.json"))
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("backup", help="Archive the database, PKI and outputs now; prune old archives.")
    made.add_argument("--json", action="store_true", help="Print one JSON line.")
    back = commands.add_parser("restore", help="Stop the stack, put an archive's files back, start it.")
    back.add_argument("archive", type=Path)
    back.add_argument("--json", action="store_true", help="Print one JSON line.")
    args = parser.parse_args(argv)
    os.umask(0o077)
    try:
        cfg = Config.load(args.config)
        with locked(cfg.backup_dir):
            if args.command == "backup":
                result = backup(cfg)
                text = f"{result['archive']} {_size(result['bytes'])}"
                text += "".join(f"\nremoved {p}" for p in result["removed"])
            else:
                result = restore(cfg, args.archive.resolve())
                text = (
                    f"restored {result['archive']} (made {result['created']} on {result['from_host']}); "
                    f"the replaced database and PKI files are in {result['kept']}"
                )
    except (BackupError, OSError, sqlite3.Error, tarfile.TarError) as err:
        print(f"zk0-backup: error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
