"""Dataset URIs, parsed in one place: `local:/abs/path`, `hf:owner/name[@revision]` and, for
simulation and server evaluation only, `synthetic:NAME[?option=value&...]`.

A `synthetic:` URI names a small SO-100 dataset that zk0 generates locally
(zk0/data/synthetic.py) and caches under `$ZK0_CACHE_DIR/synthetic/`. Its options:
`seed` (default: derived from NAME, so two names give two datasets), `episodes`, `frames`
(per episode), `video` (true: cameras stored as video, as lerobot-record does) and `cameras`
(names joined by `+`, e.g. `cameras=top+wrist+side`); an option left out takes
`SyntheticDatasetConfig`'s default. Node operators never write one: the parser refuses it
unless the caller allows it (`synthetic=True`: the simulation's `sim-datasets` and the
server's `server-eval-datasets`), so a deployed node cannot train on generated data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

URI_HELP = "use local:/absolute/path/to/dataset or hf:owner/name[@revision]"
SYNTHETIC_HELP = "write synthetic:NAME or synthetic:NAME?video=true&cameras=front+wrist&episodes=8&frames=40&seed=3"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CAMERA = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


class DatasetURIError(ValueError):
    """A dataset URI that cannot name a dataset; the message says how to write a good one."""


@dataclass(frozen=True)
class SyntheticSpec:
    """A `synthetic:` URI's dataset; None leaves the generator's default (its seed: from `name`)."""

    name: str
    seed: int | None = None
    episodes: int | None = None
    frames: int | None = None
    video: bool | None = None
    cameras: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DatasetURI:
    """Where a dataset lives: a local directory, a Hugging Face Hub repo, or generated data."""

    scheme: str  # "local", "hf" or "synthetic"
    path: Path | None = None
    repo_id: str | None = None
    revision: str | None = None
    synthetic: SyntheticSpec | None = None

    @property
    def is_local(self) -> bool:
        return self.scheme == "local"

    @property
    def is_synthetic(self) -> bool:
        return self.scheme == "synthetic"

    @property
    def local_dir(self) -> Path:
        """The directory of a ``local:`` URI (the parser always sets it)."""
        if self.path is None:
            raise DatasetURIError(f"dataset URI {self.scheme}: has no local directory: {URI_HELP}")
        return self.path


def _count(uri: str, key: str, value: str, least: int) -> int:
    if not value.isdigit() or int(value) < least:
        raise DatasetURIError(f"dataset URI {uri!r}: {key}={value!r} should be a whole number >= {least}")
    return int(value)


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _parse_synthetic(uri: str, rest: str) -> DatasetURI:
    name, _, query = rest.partition("?")
    if not _NAME.match(name):
        raise DatasetURIError(
            f"dataset URI {uri!r}: {name!r} is not a plain name (letters, digits, . _ -): {SYNTHETIC_HELP}"
        )
    spec, seen = SyntheticSpec(name=name), set()
    for pair in query.split("&") if query else []:
        key, eq, value = pair.partition("=")
        if not eq or key in seen:
            raise DatasetURIError(
                f"dataset URI {uri!r}: {pair!r} should be one option=value, each once: {SYNTHETIC_HELP}"
            )
        seen.add(key)
        if key == "seed":
            spec = replace(spec, seed=_count(uri, key, value, 0))
        elif key == "episodes":  # the episode split needs two
            spec = replace(spec, episodes=_count(uri, key, value, 2))
        elif key == "frames":
            spec = replace(spec, frames=_count(uri, key, value, 2))
        elif key == "video" and value.lower() in _BOOLS:
            spec = replace(spec, video=_BOOLS[value.lower()])
        elif key == "cameras" and all(_CAMERA.match(c) for c in value.split("+")):
            cameras = tuple(value.split("+"))
            if len(set(cameras)) != len(cameras):
                raise DatasetURIError(f"dataset URI {uri!r}: camera names repeat in {value!r}")
            spec = replace(spec, cameras=cameras)
        else:
            raise DatasetURIError(
                f"dataset URI {uri!r}: option {key}={value!r} is unknown or malformed "
                f"(options: seed, episodes, frames, video=true|false, cameras=a+b): {SYNTHETIC_HELP}"
            )
    return DatasetURI(scheme="synthetic", synthetic=spec)


def parse_dataset_uri(uri: str, *, synthetic: bool = False) -> DatasetURI:
    """Parse a dataset URI or raise `DatasetURIError` naming what is wrong and the fix.

    `synthetic:` URIs only with `synthetic=True`: generated data is for simulation and server
    evaluation, never what a deployed node's `dataset-uri` may name."""
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
    if scheme == "synthetic":
        if not synthetic:
            raise DatasetURIError(
                f"dataset URI {uri!r} names generated data, which is for simulation (run config sim-datasets) and "
                f"server evaluation only, never a node's own dataset: {URI_HELP} (to try a node on synthetic data, "
                "write one with `zk0 dataset synth --out DIR` and use local:DIR)"
            )
        return _parse_synthetic(uri, rest)
    raise DatasetURIError(f"dataset URI {uri!r} has unknown scheme {scheme!r}: {URI_HELP}")
