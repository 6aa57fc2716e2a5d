"""The version is written once, in pyproject.toml; everything else reads it.

Python reads the package metadata (``zk0.__version__``), scripts and CI read pyproject.toml,
the Dockerfiles get it as a build argument, the lab's inventory derives it. A copy written by
hand anywhere else goes stale at the next release: this test finds one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

import zk0

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]

# Prose may name a release (and a changelog must); lock files pin other projects' versions.
NOT_CODE = re.compile(r"(^|/)(pyproject\.toml|CHANGELOG[^/]*|[^/]+\.md|requirements/[^/]+\.txt|[^/]+\.lock)$")


def _files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (it lists the project's files)")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({name for name in listed.split("\0") if name and not NOT_CODE.search(name)})


def test_package_metadata_is_pyproject_version() -> None:
    # A stale editable install would show an old version: `make setup` reinstalls.
    assert zk0.__version__ == VERSION


def test_no_hand_written_copy_of_the_version() -> None:
    # Not part of a longer version number (10.4.0.35) on either side; a leading "v" counts.
    pattern = re.compile(rf"(?<![\d.]){re.escape(VERSION)}(?!\.?\d)")
    found = []
    for name in _files():
        path = ROOT / name
        if path.is_symlink() or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        found += [f"{name}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert not found, (
        f"version {VERSION} written by hand outside pyproject.toml; read it instead (zk0.__version__ in "
        "Python, pyproject.toml in scripts, a build argument in Dockerfiles):\n" + "\n".join(found)
    )
