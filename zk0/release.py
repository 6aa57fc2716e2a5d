"""Where this project's releases are published, from one setting: `[project.urls] Repository`
in pyproject.toml (GitHub: https://github.com/OWNER/NAME). The image is ghcr.io/owner/name
(GHCR wants lower case), tagged with the version; zk0bot's default image and the publish
workflow (which refuses to publish from any other repository) both come from here.

Standard library only: the publish workflow runs this file as a script before anything is
installed (`python3 zk0/release.py image`)."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
_GITHUB = re.compile(r"^https://github\.com/(?P<owner>[A-Za-z0-9-]+)/(?P<name>[A-Za-z0-9._-]+?)(?:\.git)?/?$")


def image_repository_for(repository_url: str) -> str:
    """ghcr.io/owner/name for a GitHub repository URL; a clear error for anything else."""
    match = _GITHUB.match(repository_url.strip())
    if not match:
        raise ValueError(
            f"[project.urls] Repository is {repository_url!r}, not https://github.com/OWNER/NAME: "
            "set it to the GitHub repository whose workflow publishes the image."
        )
    return f"ghcr.io/{match['owner'].lower()}/{match['name'].lower()}"


def repository_url() -> str:
    """The Repository URL: from the checkout's pyproject.toml when there is one (a release is
    built from it), else from the installed package's metadata (a wheel, pipx)."""
    if PYPROJECT.is_file():
        return str(tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["urls"]["Repository"])
    for entry in metadata.metadata("zk0").get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository":
            return url.strip()
    raise LookupError("the installed zk0 has no Repository URL in its metadata: reinstall it from a release")


def image_repository() -> str:
    return image_repository_for(repository_url())


if __name__ == "__main__":
    if sys.argv[1:] != ["image"]:
        sys.exit("usage: python3 zk0/release.py image")
    print(image_repository())
