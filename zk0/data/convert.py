"""LeRobot v2.1 datasets to v3.0 with lerobot's own converter, never touching the original.

lerobot's converter (`lerobot.scripts.convert_dataset_v21_to_v30`) works in place: it writes
`<root>_v30` beside the dataset, then moves the original to `<root>_old` and the result to
`<root>`, deleting whatever held those names. zk0 runs it on a copy in a staging folder beside
the output, so the original stays as it was and a failed conversion leaves no half-written
output; `in_place` runs it on the dataset itself (the original kept as `<root>_old`). Either
way the Hub is switched off, and the result must pass zk0's own check.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from zk0.data.loading import LEGACY_VERSION, converted_path, hub_off, open_metadata, read_info, version_problem
from zk0.data.uri import DatasetURIError, parse_dataset_uri

log = logging.getLogger(__name__)


class ConvertError(ValueError):
    """Input or output that cannot be converted: one line naming the problem and the fix."""


@dataclass(frozen=True)
class ConvertConfig:
    """What `convert_dataset` converts and where the v3.0 dataset goes."""

    source: Path  # a v2.1 dataset root (holding meta/, data/, videos/)
    output: Path | None = None  # None: `<source>_v30` beside it; ignored with in_place
    in_place: bool = False  # convert `source` itself; lerobot keeps the original as `<source>_old`

    @classmethod
    def from_uri(cls, uri: str, output: Path | None = None, in_place: bool = False) -> ConvertConfig:
        try:
            parsed = parse_dataset_uri(uri)
        except DatasetURIError as err:
            raise ConvertError(str(err)) from None
        if not parsed.is_local:
            raise ConvertError(
                f"{uri}: zk0 converts local datasets only: download it (hf download {parsed.repo_id} "
                "--repo-type dataset --local-dir DIR) and convert local:DIR"
            )
        if in_place and output is not None:
            raise ConvertError("--in-place converts the dataset where it is: give --output or --in-place, not both")
        return cls(source=parsed.local_dir, output=Path(output).absolute() if output else None, in_place=in_place)

    @property
    def destination(self) -> Path:
        if self.in_place:
            return self.source
        return self.output or converted_path(self.source)


@dataclass(frozen=True)
class ConvertResult:
    root: Path  # the v3.0 dataset
    original: Path  # where the v2.1 dataset is now
    episodes: int
    frames: int


def _check_source(source: Path) -> None:
    if not source.is_dir():
        raise ConvertError(f"{source} does not exist or is not a directory: give the dataset's root directory")
    if not (source / "meta" / "info.json").is_file():
        raise ConvertError(
            f"{source} is not a LeRobot dataset (no meta/info.json): give the dataset's root directory, "
            "the folder holding meta/, data/ and videos/"
        )
    try:
        info = read_info(source)
    except DatasetURIError as err:
        raise ConvertError(str(err)) from None
    version = str(info.get("codebase_version", ""))
    if version.startswith("v3."):
        raise ConvertError(f"{source} is already LeRobot {version}: nothing to convert; use dataset-uri=local:{source}")
    if version != LEGACY_VERSION:
        raise ConvertError(version_problem(source, version))
    missing = [
        p
        for p in ("meta/episodes.jsonl", "meta/tasks.jsonl", "meta/episodes_stats.jsonl")
        if not (source / p).is_file()
    ]
    if missing or not any((source / "data").glob("*/*.parquet")):
        parts = ", ".join(missing or ["data/chunk-*/episode_*.parquet"])
        raise ConvertError(f"{source} is an incomplete v2.1 dataset ({parts} missing): copy or record it again")


def _writable_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        problem = "is a file" if path.exists() else "does not exist"
        raise ConvertError(f"{what} {path} {problem}: choose a --output whose parent directory exists")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConvertError(f"cannot write in {path} ({what}): choose a --output in a directory you can write")


def _check_destination(cfg: ConvertConfig) -> None:
    dest = cfg.destination
    if cfg.in_place:
        # lerobot deletes `<root>_old` and `<root>_v30` if it finds them; here they would be the user's.
        for sibling in (dest.with_name(f"{dest.name}_old"), converted_path(dest)):
            if sibling.exists() or sibling.is_symlink():
                raise ConvertError(
                    f"{sibling} exists and lerobot's in-place conversion would replace it: move it away, "
                    "or convert to a copy (leave out --in-place)"
                )
        _writable_dir(dest.parent, "the dataset's parent directory")
        return
    if dest.resolve() == cfg.source.resolve() or cfg.source.resolve() in dest.resolve().parents:
        raise ConvertError(f"output {dest} is inside the dataset {cfg.source}: choose a --output outside it")
    if dest.is_symlink() or (dest.exists() and not (dest.is_dir() and not any(dest.iterdir()))):
        raise ConvertError(f"output {dest} already exists: choose another --output, or remove it yourself")
    _writable_dir(dest.parent, "the output's parent directory")


def _lerobot_convert(root: Path) -> None:
    """lerobot's converter on `root` (in place, as lerobot does it), with the Hub switched off."""
    from lerobot.scripts.convert_dataset_v21_to_v30 import convert_dataset

    # lerobot warns of v2.1's own info fields (total_chunks, total_videos) each time it reads them.
    info_log = logging.getLogger("lerobot.datasets.utils")
    level = info_log.level
    info_log.setLevel(logging.ERROR)
    try:
        with hub_off():
            convert_dataset(repo_id=f"local/{root.name}", root=root, push_to_hub=False, force_conversion=True)
    finally:
        info_log.setLevel(level)


def _verified(root: Path) -> tuple[int, int]:
    meta = open_metadata(f"local:{root}")  # the v3.0 layout and the SO-100/101 schema
    return meta.total_episodes, meta.total_frames


def convert_dataset(cfg: ConvertConfig) -> ConvertResult:
    """Convert `cfg.source` (v2.1) to v3.0 at `cfg.destination` and check it as a node would.

    Raises `ConvertError` for input or output that cannot work (before anything is written), and
    `DatasetURIError`/`DatasetSchemaError` when the converted dataset fails zk0's check (it stays
    at the destination, for a look)."""
    source = cfg.source
    _check_source(source)
    _check_destination(cfg)
    if cfg.in_place:
        original = source.with_name(f"{source.name}_old")
        try:
            _lerobot_convert(source)
        except BaseException:
            # Back to where it started: the original in its place, lerobot's output gone.
            if not source.exists() and original.is_dir():
                original.replace(source)
            shutil.rmtree(converted_path(source), ignore_errors=True)
            raise
    else:
        dest = cfg.destination
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        except OSError as err:
            raise ConvertError(
                f"cannot write in {dest.parent} ({err.strerror or err}): choose a --output in a directory you can write"
            ) from None
        try:
            work = staging / source.name
            log.info("copying %s to %s for lerobot's converter", source, staging)
            shutil.copytree(source, work)  # follows links: a Hub cache's symlinked files become files
            _lerobot_convert(work)
            if dest.is_dir():
                dest.rmdir()  # the empty directory _check_destination accepted
            work.replace(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        original = source
    episodes, frames = _verified(cfg.destination)
    return ConvertResult(root=cfg.destination, original=original, episodes=episodes, frames=frames)
