"""Dataset URIs: `local:/abs/path` and `hf:owner/name[@revision]`, parsed in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

URI_HELP = "use local:/absolute/path/to/dataset or hf:owner/name[@revision]"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


class DatasetURIError(ValueError):
    """A dataset URI that cannot name a dataset; the message says how to write a good one."""


@dataclass(frozen=True)
class DatasetURI:
    """Where a node's dataset lives: a local directory or a Hugging Face Hub repo."""

    scheme: str  # "local" or "hf"
    path: Path | None = None
    repo_id: str | None = None
    revision: str | None = None

    @property
    def is_local(self) -> bool:
        return self.scheme == "local"

    @property
    def local_dir(self) -> Path:
        """The directory of a ``local:`` URI (the parser always sets it)."""
        if self.path is None:
            raise DatasetURIError(f"dataset URI {self.scheme}: has no local directory: {URI_HELP}")
        return self.path


def parse_dataset_uri(uri: str) -> DatasetURI:
    """Parse a dataset URI or raise `DatasetURIError` naming what is wrong and the fix."""
    if not isinstance(uri, str) or not uri.strip():
        raise DatasetURIError(f"dataset URI is empty: {URI_HELP}")
    uri = uri.strip()
    scheme, sep, rest = uri.partition(":")
    if not sep:
        raise DatasetURIError(f"dataset URI {uri!r} has no scheme: {URI_HELP}")
    if scheme == "local":
        if not rest:
            raise DatasetURIError(f"dataset URI {uri!r} has no path: {URI_HELP}")
        path = Path(rest)
        if not path.is_absolute():
            raise DatasetURIError(
                f"dataset URI {uri!r} has a relative path; nodes run from other directories, "
                f"so give an absolute one: local:{Path(rest).absolute()}"
            )
        return DatasetURI(scheme="local", path=path)
    if scheme == "hf":
        repo_id, at, revision = rest.partition("@")
        if not _REPO_ID.match(repo_id):
            raise DatasetURIError(
                f"dataset URI {uri!r}: {repo_id!r} is not a Hub repo id of the form owner/name: {URI_HELP}"
            )
        if at and not _REVISION.match(revision):
            raise DatasetURIError(
                f"dataset URI {uri!r}: revision {revision!r} is empty or malformed; "
                "give a branch, tag or commit after '@', or drop the '@'"
            )
        return DatasetURI(scheme="hf", repo_id=repo_id, revision=revision or None)
    raise DatasetURIError(f"dataset URI {uri!r} has unknown scheme {scheme!r}: {URI_HELP}")
