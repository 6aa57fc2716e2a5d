"""The install path: a wheel built from this checkout, installed into a throwaway venv the way
scripts/install-zk0bot.sh --light does (zk0 without its heavy dependencies, then typer, flwr,
ansible and ansible-runner), runs `zk0bot` with the playbooks shipped inside the package."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from zk0 import __version__
from zk0.deploy import pki

from .conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

UV = Path(sys.executable).parent / "uv"
SCRIPT = REPO / "scripts" / "install-zk0bot.sh"
IMAGE = f"zk0:{__version__}"  # the tag `make image` gives this checkout's image


def _run(argv: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False, timeout=400, **kw)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = _run([UV, "build", "--wheel", "-q", "-o", out, REPO])
    assert built.returncode == 0, built.stderr
    return next(out.glob("zk0-*.whl"))


def test_the_wheel_ships_the_playbooks_roles_and_app_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (
        "zk0/_ops/ansible.cfg",
        "zk0/_ops/playbooks/client.yml",
        "zk0/_ops/playbooks/server.yml",
        "zk0/_ops/roles/supernode/tasks/main.yml",
        "zk0/_ops/roles/superlink/files/enroll_nodes.py",
        "zk0/_ops/roles/supernode/meta/argument_specs.yml",
        "zk0/_ops/app/pyproject.toml",
        "zk0/bot/cli.py",
        "zk0/bot/playbooks/node-key.yml",
    ):
        assert path in names, path
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "zk0bot = zk0.bot.cli:app" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_install_script_pins_match_the_project() -> None:
    text = SCRIPT.read_text()
    assert _run(["bash", "-n", SCRIPT]).returncode == 0
    pins = dict(re.findall(r'"([a-z][a-z-]*)==([\d.]+)"', text.split("LIGHT_DEPS=(")[1].split(")")[0]))
    project = (REPO / "pyproject.toml").read_text()
    assert f'"typer=={pins["typer"]}"' in project and f'"flwr[simulation]=={pins["flwr"]}"' in project
    assert f"ansible=={pins['ansible']}" in (REPO / "requirements" / "ops.in").read_text()
    assert f'"ansible=={pins["ansible"]}"' in project  # the operator extra
    assert f'"ansible-runner=={pins["ansible-runner"]}"' in project  # zk0bot runs Ansible through it
    assert f'"prometheus-client=={pins["prometheus-client"]}"' in project  # `server status` parses the metrics


def test_installed_zk0bot_runs_the_shipped_playbook_and_builds_the_app(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    assert _run([UV, "venv", "-q", "-p", sys.executable, venv]).returncode == 0
    py = venv / "bin" / "python"
    script_pins = re.findall(r'"([a-z][a-z-]*==[\d.]+)"', SCRIPT.read_text().split("LIGHT_DEPS=(")[1].split(")")[0])
    deps = _run([UV, "pip", "install", "-q", "-p", py, *script_pins])
    assert deps.returncode == 0, deps.stderr
    own = _run([UV, "pip", "install", "-q", "-p", py, "--no-deps", wheel])
    assert own.returncode == 0, own.stderr

    env = {**os.environ, "ZK0BOT_HOME": str(tmp_path / "home"), "FLWR_TELEMETRY_ENABLED": "0", "COLUMNS": "200"}
    env.pop("ZK0BOT_ASSETS", None)
    bot = venv / "bin" / "zk0bot"
    assert _run([bot, "--help"], env=env, cwd=tmp_path).returncode == 0
    paths = _run([bot, "paths"], env=env, cwd=tmp_path)
    site = str(venv / "lib")
    assert f"playbooks: {site}" in paths.stdout and "/zk0/_ops/playbooks" in paths.stdout, paths.stdout
    assert f"ansible-playbook: {venv}/bin/ansible-playbook" in paths.stdout, paths.stdout

    # The shipped client playbook validates zk0bot's variables (check mode: nothing changes here).
    dataset = tmp_path / "ds"
    dataset.mkdir()
    ca = pki.create_ca(tmp_path / "ca").cert
    check = _run(
        [
            bot,
            "client",
            "start",
            "--check",
            "--dataset",
            f"local:{dataset}",
            "--superlink",
            "h.example:8000",
            "--ca",
            ca,
            "--image",
            IMAGE,
            "--image-source",
            "local",
        ],
        env=env,
        cwd=tmp_path,
    )
    log = next((tmp_path / "home" / "client" / "logs").glob("*-client-check.log")).read_text()
    assert f"{site}" in log.splitlines()[0] and "_ops/playbooks/client.yml" in log.splitlines()[0]
    assert log.split("TASK [Check the supernode settings")[1].split("TASK [")[0].strip().endswith("ok: [localhost]")
    assert check.returncode in (0, 1), check.stderr

    # `server run` outside a checkout stages the installed package + shipped pyproject.toml; flwr builds a FAB from it.
    code = "import shutil, sys\nfrom zk0.bot.runs import app_dir\nwith app_dir() as d: shutil.copytree(d, sys.argv[1])"
    stage = _run([py, "-c", code, tmp_path / "app"], env=env, cwd=tmp_path)
    assert stage.returncode == 0, stage.stderr
    assert not (tmp_path / "app" / "zk0" / "_ops").exists()
    fab = _run([venv / "bin" / "flwr", "build", "--app", tmp_path / "app"], env=env, cwd=tmp_path)
    assert fab.returncode == 0 and list(tmp_path.glob("*.fab")), fab.stdout + fab.stderr
