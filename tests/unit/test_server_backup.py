"""zk0-backup (roles/superlink/files/zk0_backup.py), run as the program the timer runs, on a real
SQLite database in WAL mode that another process keeps writing, with checkpoint and PKI
directories laid out as on a server (owned by uid 49999 when the tests run as root)."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROGRAM = REPO / "roles" / "superlink" / "files" / "zk0_backup.py"
ROOT = os.geteuid() == 0
OWNER = 49999 if ROOT else os.getuid()  # the stack's runtime uid, as on a server

# Each transaction inserts a batch of BATCH rows: a consistent copy holds whole batches only.
BATCH = 10
WRITER = f"""
import sqlite3, sys, pathlib
con = sqlite3.connect(sys.argv[1], timeout=30)
stop = pathlib.Path(sys.argv[2])
batch = 0
while not stop.exists():
    batch += 1
    with con:
        con.executemany("INSERT INTO node (batch, payload) VALUES (?, ?)", [(batch, "x" * 200)] * {BATCH})
print(batch)
"""


@dataclass
class Server:
    root: Path
    config: Path
    state: Path
    pki: Path
    outputs: Path
    backups: Path
    log: Path

    @property
    def db(self) -> Path:
        return self.state / "superlink.db"

    def settings(self, **changes: object) -> None:
        data = json.loads(self.config.read_text())
        data.update(changes)
        self.config.write_text(json.dumps(data))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(PROGRAM), "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def backup(self) -> dict:
        done = self.run("backup", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    if ROOT:
        os.chown(path, OWNER, OWNER)


def _rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT id, batch FROM node ORDER BY id").fetchall()
    finally:
        con.close()


@pytest.fixture
def server(tmp_path: Path) -> Server:
    s = Server(
        tmp_path,
        tmp_path / "backup.json",
        tmp_path / "volumes" / "state",
        tmp_path / "etc" / "pki",
        tmp_path / "volumes" / "outputs",
        tmp_path / "backups",
        tmp_path / "stack.log",
    )
    s.state.mkdir(parents=True)
    con = sqlite3.connect(s.db)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE node (id INTEGER PRIMARY KEY, batch INTEGER, payload TEXT)")
    con.execute("CREATE TABLE run (id INTEGER PRIMARY KEY, name TEXT)")
    con.executemany("INSERT INTO run (name) VALUES (?)", [("run-a",), ("run-b",)])
    con.commit()
    con.close()
    if ROOT:
        os.chown(s.db, OWNER, OWNER)
    s.db.chmod(0o600)
    for name, mode in [("ca.pem", 0o644), ("superlink.pem", 0o644), ("superlink.key", 0o600),
                       ("ca.key", 0o600), ("admin.token", 0o600), ("superexec.secret", 0o600)]:  # fmt: skip
        _write(s.pki / name, f"{name} of this server\n".encode() + os.urandom(32), mode)
    run = s.outputs / "run-a"
    for n in (1, 2):
        _write(run / "checkpoints" / f"round_{n}" / "model.safetensors", os.urandom(4096))
        _write(run / "checkpoints" / f"round_{n}" / "zk0_state.json", json.dumps({"round": n}).encode())
    _write(run / "checkpoints" / "round_3" / "model.safetensors", os.urandom(64))  # no state file: incomplete
    _write(run / "checkpoints" / ".round_4.partial" / "model.safetensors", os.urandom(64))  # being written
    _write(run / "rounds.jsonl", b'{"round": 1}\n{"round": 2}\n')
    _write(run / "plots" / "loss.png", os.urandom(512))
    (s.outputs / "latest").symlink_to(run)
    # stop/start as the role writes them, here commands that log what they saw.
    record = "import sqlite3, sys; p = sys.argv[1]; open(p, 'a').write(sys.argv[2] + '\\n')"
    seen = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[2]); "
        "n = c.execute('SELECT count(*) FROM node').fetchone()[0]; open(sys.argv[1], 'a').write(f'start {n}\\n')"
    )
    s.config.write_text(
        json.dumps(
            {
                "backup_dir": str(s.backups),
                "stack": "zk0-server",
                "keep": 3,
                "checkpoints": "latest",
                "pki_dir": str(s.pki),
                "state": {"path": str(s.state)},
                "outputs": {"path": str(s.outputs)},
                "stop": [sys.executable, "-c", record, str(s.log), "stop"],
                "start": [sys.executable, "-c", seen, str(s.log), str(s.db)],
                "stack_dir": str(tmp_path),
            }
        )
    )
    return s


def _members(archive: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return tar.getmembers()


def _read(archive: Path, name: str) -> bytes:
    with tarfile.open(archive, "r:gz") as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


# ---------------------------------------------------------------- backup


def test_backup_of_a_database_being_written_is_one_consistent_snapshot(server: Server, tmp_path: Path) -> None:
    stop = tmp_path / "stop-writing"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(server.db), str(stop)], stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while len(_rows(server.db)) < 50 * BATCH and time.monotonic() < deadline:
            time.sleep(0.05)
        result = server.backup()
        during = len(_rows(server.db))
    finally:
        stop.touch()
        batches = int(writer.communicate(timeout=30)[0])
    assert during >= 50 * BATCH, "the writer never got going"
    archive = Path(result["archive"])
    copy = tmp_path / "copy.db"
    copy.write_bytes(_read(archive, "db/superlink.db"))
    assert sqlite3.connect(copy).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = _rows(copy)
    # Whole transactions only, none missing in between: a snapshot, not a file copy mid-write.
    assert rows == [(i + 1, i // BATCH + 1) for i in range(len(rows))]
    assert len(rows) % BATCH == 0 and 0 < len(rows) <= batches * BATCH
    assert result["rows"] == {"node": len(rows), "run": 2}
    assert json.loads(_read(archive, "manifest.json"))["database"] == {"integrity": "ok", "rows": result["rows"]}
    # The live database is intact, and SQLite's files next to it stay the stack's (uid 49999).
    assert sqlite3.connect(server.db).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    for side in server.state.iterdir():
        assert side.stat().st_uid == OWNER, side


def test_archive_holds_db_pki_and_latest_checkpoints_but_never_the_ca_key(server: Server) -> None:
    archive = Path(server.backup()["archive"])
    members = _members(archive)
    names = [m.name for m in members]
    assert names[0] == "manifest.json"
    assert {"db/superlink.db", "pki/ca.pem", "pki/superlink.pem", "pki/superlink.key"} <= set(names)
    assert not [n for n in names if n.endswith(("ca.key", "admin.token", "superexec.secret"))]
    checkpoints = {n.split("/")[3] for n in names if "/checkpoints/" in n}
    assert checkpoints == {"round_2"}  # the newest complete one: not round_1, round_3 (incomplete), .partial
    assert "outputs/run-a/rounds.jsonl" in names and "outputs/run-a/plots/loss.png" in names
    assert not [n for n in names if n.startswith("outputs/latest")]  # a symlink
    by_name = {m.name: m for m in members}
    assert (by_name["db/superlink.db"].uid, by_name["db/superlink.db"].mode) == (OWNER, 0o600)
    assert (by_name["pki/superlink.key"].uid, by_name["pki/superlink.key"].mode) == (OWNER, 0o600)

    server.settings(checkpoints="all")
    names = [m.name for m in _members(Path(server.backup()["archive"]))]
    assert {n.split("/")[3] for n in names if "/checkpoints/" in n} == {"round_1", "round_2", "round_3"}


def test_archives_are_private_and_the_program_prints_path_and_size(server: Server) -> None:
    server.backups.mkdir(mode=0o755)  # an existing directory too open is closed
    (server.backups / ".staging-killed").mkdir()  # left by runs that were killed
    (server.backups / ".zk0-server-20200101T000000.000Z.tar.gz.partial").write_bytes(b"half")
    done = server.run("backup")
    assert done.returncode == 0, done.stderr
    path, size = done.stdout.strip().split(" ", 1)
    archive = Path(path)
    assert archive.parent == server.backups and archive.name.startswith("zk0-server-")
    assert size.endswith("KiB") and float(size.split()[0]) == pytest.approx(archive.stat().st_size / 1024, abs=0.1)
    assert archive.stat().st_mode & 0o777 == 0o600
    assert server.backups.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in server.backups.iterdir()) == [".lock", archive.name]  # no staging left


def test_retention_keeps_the_newest_archives_and_nothing_else_is_touched(server: Server) -> None:
    server.settings(keep=2)
    server.backups.mkdir(mode=0o700)
    other = [server.backups / "notes.txt", server.backups / "other-stack-20200101T000000.000Z.tar.gz"]
    for path in other:
        path.write_text("keep me")
    made = [server.backup() for _ in range(4)]
    left = sorted(p for p in server.backups.glob("zk0-server-*.tar.gz"))
    assert left == sorted(Path(m["archive"]) for m in made[-2:])
    assert [Path(p) for p in made[-1]["removed"]] == [Path(made[1]["archive"])]
    assert all(path.read_text() == "keep me" for path in other)


def test_bad_settings_say_what_to_fix(server: Server, tmp_path: Path) -> None:
    server.settings(keep=0)
    done = server.run("backup")
    assert done.returncode == 1 and "keep must be >= 1" in done.stderr and "Traceback" not in done.stderr
    missing = subprocess.run(
        [sys.executable, str(PROGRAM), "--config", str(tmp_path / "nope.json"), "backup"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1 and "run the superlink role" in missing.stderr
    server.settings(keep=3)
    server.db.unlink()
    done = server.run("backup")
    assert done.returncode == 1 and "no database at" in done.stderr and "zk0bot server start" in done.stderr


# ---------------------------------------------------------------- restore


def _snapshot(server: Server) -> dict[str, tuple[bytes, int, int]]:
    files = [*server.pki.iterdir(), *(p for p in server.outputs.rglob("*") if p.is_file() and not p.is_symlink())]
    return {str(p): (p.read_bytes(), p.stat().st_uid, p.stat().st_mode & 0o777) for p in files}


def test_restore_puts_back_identical_files_and_rows_then_starts_the_stack(server: Server) -> None:
    archive = Path(server.backup()["archive"])
    saved_rows = _rows(server.db)
    before = _snapshot(server)
    checkpoint = server.outputs / "run-a" / "checkpoints" / "round_2" / "model.safetensors"
    # The host now differs: 7 newer rows left in the WAL by a writer that died before its
    # checkpoint (a restored file must not get them replayed), new PKI files, a changed
    # checkpoint, a lost file and a later run.
    crash = (
        "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_autocheckpoint=0'); "
        "c.executemany('INSERT INTO node (batch, payload) VALUES (?, ?)', [(99, 'later')] * 7); c.commit(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", crash, str(server.db)], check=True)
    assert (server.state / "superlink.db-wal").stat().st_size > 0
    for name in ("superlink.pem", "superlink.key"):
        (server.pki / name).write_bytes(b"a newer key pair\n")
    checkpoint.write_bytes(b"damaged")
    (server.outputs / "run-a" / "rounds.jsonl").unlink()
    (server.outputs / "run-b").mkdir()
    (server.outputs / "run-b" / "rounds.jsonl").write_text("a later run\n")

    done = server.run("restore", str(archive), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert _rows(server.db) == saved_rows
    assert sqlite3.connect(server.db).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    after = _snapshot(server)
    # Checkpoints not in the archive (round_1 in latest mode) and later files stay as they are.
    assert {k: v for k, v in after.items() if k in before and "round_1" not in k} == {
        k: v for k, v in before.items() if "round_1" not in k
    }
    assert (server.outputs / "run-b" / "rounds.jsonl").read_text() == "a later run\n"
    assert (server.db.stat().st_uid, server.db.stat().st_mode & 0o777) == (OWNER, 0o600)
    # Stopped before anything changed, started on the restored database.
    assert server.log.read_text().splitlines() == ["stop", f"start {len(saved_rows)}"]
    kept = Path(result["kept"])
    assert kept.parent == server.backups and (kept / "superlink.key").read_bytes() == b"a newer key pair\n"
    assert len(_rows(kept / "superlink.db")) == len(saved_rows) + 7
    assert not list(server.backups.glob(".restore-*"))


def _tamper(source: Path, dest: Path, extra: tarfile.TarInfo, data: bytes = b"x") -> Path:
    """``source`` with one more member."""
    with tarfile.open(source, "r:gz") as tar, tarfile.open(dest, "w:gz") as out:
        for member in tar:
            out.addfile(member, tar.extractfile(member) if member.isfile() else None)
        extra.size = len(data) if extra.isfile() else 0
        out.addfile(extra, io.BytesIO(data) if extra.isfile() else None)
    return dest


@pytest.mark.parametrize(
    ("member", "says"),
    [
        ("../../etc/evil", "which a zk0 backup never does"),
        ("pki/ca.key", "which a zk0 backup never does"),
        ("/abs/path", "which a zk0 backup never does"),
        ("link", "which a zk0 backup never does"),
    ],
)
def test_restore_refuses_foreign_members_before_stopping_anything(
    server: Server, tmp_path: Path, member: str, says: str
) -> None:
    archive = Path(server.backup()["archive"])
    extra = tarfile.TarInfo(member if member != "link" else "outputs/link")
    if member == "link":
        extra.type, extra.linkname = tarfile.SYMTYPE, "/etc/shadow"
    bad = _tamper(archive, tmp_path / "bad.tar.gz", extra)
    before = _snapshot(server)
    done = server.run("restore", str(bad))
    assert done.returncode == 1 and says in done.stderr and "Traceback" not in done.stderr
    assert not server.log.exists()  # never stopped
    assert _snapshot(server) == before


def test_restore_refuses_another_federations_ca_and_non_backups(server: Server, tmp_path: Path) -> None:
    archive = Path(server.backup()["archive"])
    (server.pki / "ca.pem").write_text("another federation's CA\n")
    done = server.run("restore", str(archive))
    assert done.returncode == 1 and "another federation's CA" in done.stderr
    plain = tmp_path / "plain.tar.gz"
    with tarfile.open(plain, "w:gz") as tar:
        tar.add(server.pki / "ca.pem", "ca.pem")
    for path, says in [(plain, "is not a zk0 backup"), (tmp_path / "none.tar.gz", "no archive at")]:
        done = server.run("restore", str(path))
        assert done.returncode == 1 and says in done.stderr, done.stderr
    assert not server.log.exists()
