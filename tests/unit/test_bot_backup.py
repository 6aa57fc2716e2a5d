"""`zk0bot server backup|restore` through the CLI (CliRunner), with ansible-playbook replaced by a
stub that records the run (and, for a backup, drops an archive where the role's fetch would);
the archives read here are real ones, made by the role's zk0-backup program."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tarfile
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from zk0.bot import backup, playbook, server
from zk0.bot.cli import app
from zk0.bot.errors import ExitCode
from zk0.bot.state import save_json

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = "zk0-server-20261102T030000.000Z.tar.gz"


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("ZK0BOT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    monkeypatch.setenv("COLUMNS", "400")
    return tmp_path / "home"


@pytest.fixture
def runner(home: Path) -> CliRunner:
    return CliRunner()


@pytest.fixture
def runs(monkeypatch, tmp_path: Path) -> list[dict]:
    """ansible-playbook stubbed: records each run; a backup run leaves an archive in the fetch dir."""
    calls: list[dict] = []

    def fake(book, inventory, log_dir, secrets=None, check=False, *args, **kwargs):
        inv = json.loads(Path(inventory).read_text())
        calls.append({"book": book, "check": check, "inventory": inv})
        (group,) = inv["all"]["children"].values()
        fetch = group["vars"].get("superlink_backup_fetch_dir")
        if fetch:
            (Path(fetch) / ARCHIVE).write_bytes(b"\0" * 3 * 2**20)
        return playbook.PlaybookResult(rc=0, log=tmp_path / "fake.log")

    monkeypatch.setattr(playbook, "run_playbook", fake)
    return calls


def _save_server(**given: object) -> None:
    save_json(server.settings_path(), asdict(server.ServerSettings(sans=["link.example.org"], **given)))


def _group(run: dict) -> dict:
    return run["inventory"]["all"]["children"][server.GROUP]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """A real archive: zk0-backup run on a small server layout under tmp_path."""
    root = tmp_path / "srv"
    for d in ("state", "pki", "outputs/run-a"):
        (root / d).mkdir(parents=True)
    con = sqlite3.connect(root / "state" / "superlink.db")
    con.execute("CREATE TABLE node (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    (root / "pki" / "ca.pem").write_text("ca\n")
    (root / "outputs" / "run-a" / "rounds.jsonl").write_text("{}\n")
    settings = {"backup_dir": str(root / "backups"), "pki_dir": str(root / "pki")}
    settings |= {"state": {"path": str(root / "state")}, "outputs": {"path": str(root / "outputs")}}
    (root / "backup.json").write_text(json.dumps(settings))
    program = REPO / "roles" / "superlink" / "files" / "zk0_backup.py"
    done = subprocess.run(
        [sys.executable, str(program), "--config", str(root / "backup.json"), "backup", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(json.loads(done.stdout)["archive"])


def test_backup_needs_a_server_or_a_host(runner: CliRunner, runs: list[dict]) -> None:
    result = runner.invoke(app, ["server", "backup"])
    assert result.exit_code == ExitCode.NOT_CONFIGURED
    assert "zk0bot server start" in result.stderr and "--host" in result.stderr
    assert runs == []


def test_backup_runs_the_backup_entry_point_and_prints_the_fetched_archive(
    runner: CliRunner, runs: list[dict], home: Path
) -> None:
    _save_server(host="admin@link.example.org", ssh_port=2222, config_dir="/srv/zk0", extra_vars={
        "ansible_become_method": "su", "superlink_backup_keep": 3})  # fmt: skip
    result = runner.invoke(app, ["server", "backup"])
    assert result.exit_code == 0, result.output
    (run,) = runs
    assert Path(run["book"]) == backup.BACKUP_PLAYBOOK and run["check"] is False
    group = _group(run)
    dest = home / "server" / "backups"
    assert group["hosts"] == {
        "link.example.org": {"ansible_host": "link.example.org", "ansible_user": "admin", "ansible_port": 2222}
    }
    # The config dir and connection settings travel; role settings are the server's own (backup.json).
    assert group["vars"] == {
        "superlink_config_dir": "/srv/zk0",
        "superlink_backup_fetch_dir": str(dest),
        "ansible_become_method": "su",
    }
    assert dest.stat().st_mode & 0o777 == 0o700
    assert result.stdout.strip() == str(dest / ARCHIVE)  # stdout: the path alone, for scripts
    assert "3.0 MiB" in result.stderr


def test_backup_to_another_host_and_directory(runner: CliRunner, runs: list[dict], tmp_path: Path) -> None:
    _save_server(host="admin@link.example.org", ssh_port=2222)
    result = runner.invoke(app, ["server", "backup", "--host", "root@192.0.2.9", "--dest", str(tmp_path / "here")])
    assert result.exit_code == 0, result.output
    group = _group(runs[-1])
    # Another host: none of the saved host's SSH settings, the default config directory.
    assert group["hosts"] == {"192.0.2.9": {"ansible_host": "192.0.2.9", "ansible_user": "root"}}
    assert group["vars"]["superlink_config_dir"] == "/etc/zk0/server"
    assert result.stdout.strip() == str(tmp_path / "here" / ARCHIVE)


def test_a_backup_that_fetched_nothing_is_an_error(runner: CliRunner, monkeypatch, tmp_path: Path) -> None:
    _save_server()
    monkeypatch.setattr(playbook, "run_playbook", lambda *a, **k: playbook.PlaybookResult(rc=0, log=tmp_path / "l"))
    result = runner.invoke(app, ["server", "backup"])
    assert result.exit_code == ExitCode.FAILED and "no archive arrived" in result.stderr


def test_restore_refuses_missing_files_and_non_backups_before_any_run(
    runner: CliRunner, runs: list[dict], tmp_path: Path
) -> None:
    _save_server()
    missing = runner.invoke(app, ["server", "restore", str(tmp_path / "nope.tar.gz"), "--yes"])
    assert missing.exit_code == ExitCode.NOT_FOUND and "No archive at" in missing.stderr
    plain = tmp_path / "plain.tar.gz"
    with tarfile.open(plain, "w:gz") as tar:
        tar.add(__file__, "notes.py")
    foreign = runner.invoke(app, ["server", "restore", str(plain), "--yes"])
    assert foreign.exit_code == ExitCode.USAGE and "is not a zk0 backup" in foreign.stderr
    assert runs == []


def test_restore_asks_first_and_a_no_changes_nothing(runner: CliRunner, runs: list[dict], archive: Path) -> None:
    _save_server(host="admin@link.example.org")
    declined = runner.invoke(app, ["server", "restore", str(archive)], input="n\n")
    assert declined.exit_code == ExitCode.FAILED and "not confirmed" in declined.stderr
    assert "link.example.org" in declined.output and archive.name in declined.output
    assert runs == []
    accepted = runner.invoke(app, ["server", "restore", str(archive)], input="y\n")
    assert accepted.exit_code == 0, accepted.output
    (run,) = runs
    assert Path(run["book"]) == backup.RESTORE_PLAYBOOK and run["check"] is False
    assert _group(run)["vars"]["superlink_restore_archive"] == str(archive.resolve())
    assert "zk0bot server start" in accepted.stderr  # the next step


def test_restore_check_mode_asks_nothing_and_runs_in_check_mode(
    runner: CliRunner, runs: list[dict], archive: Path
) -> None:
    _save_server()
    result = runner.invoke(app, ["server", "restore", str(archive), "--check"])
    assert result.exit_code == 0, result.output
    assert runs[-1]["check"] is True and "restored" not in result.stderr
    assert _group(runs[-1])["hosts"] == {"localhost": playbook.Target().host_vars()}


@pytest.mark.parametrize(
    ("book", "entry"), [(backup.BACKUP_PLAYBOOK, "backup_now"), (backup.RESTORE_PLAYBOOK, "restore")]
)
def test_the_playbooks_use_role_entry_points_that_exist(book: Path, entry: str) -> None:
    (play,) = yaml.safe_load(book.read_text())
    (task,) = play["tasks"]
    assert play["hosts"] == server.GROUP and play["become"] is True
    assert task["ansible.builtin.include_role"] == {"name": "superlink", "tasks_from": entry}
    role = REPO / "roles" / "superlink"
    assert (role / "tasks" / f"{entry}.yml").is_file()
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert set(specs[entry]["options"]) >= {"superlink_config_dir"}
