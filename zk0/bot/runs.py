"""`zk0bot server run`: submit the zk0 apps with ``flwr run --stream`` and show round progress.

The app bundle (FAB) is built by ``flwr run`` from an app directory: a zk0 checkout when
zk0bot runs from one, otherwise a staging directory made from the installed package plus
the ``pyproject.toml`` the wheel ships (``zk0/_ops/app/``), so a pipx install can submit
runs too. The run's status comes from the SuperLink afterwards (``flwr ls``), so the exit
code says whether the run completed, not only whether the stream ended.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from zk0.bot.errors import BotError, ExitCode

# Progress comes from the ServerApp's log lines as `flwr run --stream` relays them: zk0's
# ServerApp says "run NAME: rounds A..B" and "round N done in ...s"; Flower's own strategies
# (e.g. the numpy baseline app) say "[ROUND N/B]" when a round starts.
_PLAN = re.compile(r"rounds (\d+)\.\.(\d+)")
_DONE = re.compile(r"\bround (\d+) done\b")
_FLOWER_ROUND = re.compile(r"\[ROUND (\d+)/(\d+)\]")
_STARTED = re.compile(r"Successfully started run (\d+)")


def flwr_bin() -> str:
    candidate = Path(sys.executable).parent / "flwr"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("flwr")
    if not found:
        raise BotError(
            "flwr is not installed", "install zk0bot with `pipx install 'zk0[operator]'`", ExitCode.MISSING_TOOL
        )
    return found


@contextmanager
def app_dir(explicit: Path | None = None) -> Iterator[Path]:
    """The directory ``flwr run`` builds the FAB from (see the module docstring)."""
    import zk0

    if explicit is not None:
        if not (Path(explicit) / "pyproject.toml").is_file():
            raise BotError(f"{explicit} has no pyproject.toml", "pass --app a zk0 checkout", ExitCode.NOT_FOUND)
        yield Path(explicit)
        return
    package = Path(zk0.__file__).resolve().parent
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and 'name = "zk0"' in (checkout / "pyproject.toml").read_text():
        yield checkout
        return
    shipped = package / "_ops" / "app" / "pyproject.toml"
    if not shipped.is_file():
        raise BotError(
            "The installed zk0 has no app pyproject.toml", "pass --app PATH_TO_A_ZK0_CHECKOUT", ExitCode.NOT_FOUND
        )
    with tempfile.TemporaryDirectory(prefix="zk0bot-app-") as tmp:
        stage = Path(tmp)
        shutil.copyfile(shipped, stage / "pyproject.toml")
        shutil.copytree(package, stage / "zk0", ignore=shutil.ignore_patterns("_ops", "__pycache__", "*.pyc"))
        yield stage


def progress_of(line: str, done: int, total: int | None) -> tuple[int, int | None] | None:
    """(rounds done, total) after ``line``, or None when the line says nothing about progress."""
    if m := _PLAN.search(line):
        return int(m.group(1)) - 1, int(m.group(2))
    if m := _DONE.search(line):
        return int(m.group(1)), total
    if m := _FLOWER_ROUND.search(line):
        return int(m.group(1)) - 1, int(m.group(2))
    return None


@dataclass
class RunOutcome:
    run_id: int | None
    rounds_done: int
    status: str  # e.g. "finished:completed"; "" when unknown
    rc: int


def run_status(run_id: int, connection: str) -> str:
    proc = subprocess.run(
        [flwr_bin(), "ls", connection, "--run-id", str(run_id), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        data = json.loads(proc.stdout[proc.stdout.index("{") :])
        return str(data["runs"][0]["status"])
    except (ValueError, KeyError, IndexError):
        return ""


def submit(
    connection: str,
    rounds: int | None,
    run_config: list[str],
    app: Path | None = None,
    on_line: Callable[[str], None] = lambda line: None,
    on_progress: Callable[[int, int | None], None] = lambda done, total: None,
) -> RunOutcome:
    """``flwr run APP CONNECTION --stream`` with the overrides; calls back per line and with
    (rounds done, total rounds or None) whenever progress changes."""
    overrides = [f"num-server-rounds={rounds}"] if rounds else []
    with app_dir(app) as directory:
        argv = [flwr_bin(), "run", str(directory), connection, "--stream"]
        for item in [*run_config, *overrides]:
            argv += ["--run-config", item]
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, bufsize=1
        )
        run_id, done, total = None, 0, rounds
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            on_line(line)
            if run_id is None and (m := _STARTED.search(line)):
                run_id = int(m.group(1))
            if (update := progress_of(line, done, total)) is not None:
                done, total = update
                on_progress(done, total)
        rc = proc.wait()
    status = run_status(run_id, connection) if run_id is not None else ""
    return RunOutcome(run_id, done, status, rc)
