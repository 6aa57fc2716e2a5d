"""The image's address comes from one setting (pyproject's Repository URL): zk0bot's default
and the publish workflow agree with it, and a URL that names no GitHub repository is refused."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from zk0 import __version__, release

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "publish-image.yml"


@pytest.mark.parametrize(
    ("url", "image"),
    [
        ("https://github.com/ivelin/zk0", "ghcr.io/ivelin/zk0"),
        ("https://github.com/Some-Org/ZK0.git", "ghcr.io/some-org/zk0"),
        ("https://github.com/a/b/", "ghcr.io/a/b"),
    ],
)
def test_image_repository_is_ghcr_of_the_github_repository(url: str, image: str) -> None:
    assert release.image_repository_for(url) == image


@pytest.mark.parametrize("url", ["https://gitlab.com/a/b", "github.com/a/b", "https://github.com/a", ""])
def test_a_url_that_names_no_github_repository_is_refused_with_the_fix(url: str) -> None:
    with pytest.raises(ValueError, match=r"\[project.urls\] Repository .* https://github.com/OWNER/NAME"):
        release.image_repository_for(url)


def test_zk0bot_defaults_to_the_image_the_workflow_publishes() -> None:
    from zk0.bot import client, server

    url = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    expected = f"{release.image_repository_for(url)}:{__version__}"
    assert expected == client.DEFAULT_IMAGE
    assert client.ClientSettings().image == server.ServerSettings().image == expected


def test_the_workflow_takes_the_image_from_the_same_setting_and_refuses_another_repository() -> None:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["publish"]["steps"]
    scripts = "\n".join(step.get("run", "") for step in steps)
    assert "python3 zk0/release.py image" in scripts
    assert '"ghcr.io/${GITHUB_REPOSITORY,,}"' in scripts and "exit 1" in scripts
    # The script form the workflow calls works without the package's dependencies.
    result = subprocess.run(
        [sys.executable, "-I", str(REPO / "zk0" / "release.py"), "image"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == release.image_repository()
