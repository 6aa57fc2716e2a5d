"""Open a node's dataset from its URI, check it, and split its episodes into train and eval.

A ``local:`` dataset never reaches the Hugging Face Hub: lerobot asks the Hub for any
metadata or data file it cannot find (naming the directory in the request), so `precheck`
checks the v3.0 layout first and lerobot runs with the Hub switched off for local roots.
An ``hf:`` dataset is looked up on the Hub once, before lerobot (and torch) load, so an
unreachable Hub, an unknown repo or a missing token is one sentence, in a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from zk0.data.schema import check_so100_schema
from zk0.data.uri import DatasetURI, DatasetURIError, parse_dataset_uri
from zk0.data.video import log_video_decoder, video_decoder

LOCAL_INSTEAD = "or copy the dataset to this machine and use dataset-uri=local:/path/to/it"
LEGACY_VERSION = "v2.1"  # the layout lerobot's converter takes


@dataclass(frozen=True)
class EpisodeSplit:
    """Which episodes train and which evaluate; the same on every call for the same inputs."""

    train: list[int]
    eval: list[int]


def split_episodes(num_episodes: int, eval_fraction: float, seed: int) -> EpisodeSplit:
    """Hold out `eval_fraction` of the episodes (at least one each side when possible)."""
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval fraction {eval_fraction} must be in [0, 1)")
    episodes = list(range(num_episodes))
    random.Random(seed).shuffle(episodes)
    n_eval = round(num_episodes * eval_fraction)
    if eval_fraction > 0 and num_episodes >= 2:
        n_eval = min(max(n_eval, 1), num_episodes - 1)
    return EpisodeSplit(train=sorted(episodes[n_eval:]), eval=sorted(episodes[:n_eval]))


def _local_repo_id(path: Path) -> str:
    # lerobot wants a repo id even for a local root; it never leaves this process.
    return f"local/{path.name or 'dataset'}"


def read_info(path: Path) -> dict:
    """The dataset's meta/info.json, or a `DatasetURIError` saying what is wrong with it."""
    info = path / "meta" / "info.json"
    if not info.is_file():
        raise DatasetURIError(
            f"{path} is not a LeRobot dataset: {info} is missing. Point dataset-uri at the "
            "dataset root (the folder holding meta/, data/ and videos/)"
        )
    try:
        data = json.loads(info.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetURIError(
            f"{info} is not valid JSON ({err}); the dataset is damaged: copy or record it again"
        ) from err
    except OSError as err:
        raise DatasetURIError(f"cannot read {info} ({err.strerror}): check its permissions") from err
    if not isinstance(data, dict):
        raise DatasetURIError(f"{info} holds no LeRobot dataset info (not a JSON object); the dataset is damaged")
    return data


def version_problem(path: Path, version: str) -> str:
    """Why zk0 cannot read a dataset of format `version` (not v3.x) at `path`, and the fix."""
    if version == LEGACY_VERSION:
        return (
            f"{path} is a LeRobot v2.1 dataset (meta/info.json says v2.1; episodes in meta/episodes.jsonl, "
            f"one data file per episode) and zk0 reads v3.0: convert a copy with `zk0 dataset convert local:{path}` "
            f"(writes {converted_path(path)}, the original stays as it is) and use that"
        )
    return (
        f"{path} is LeRobot dataset format {version or '(unknown)'} and zk0 reads v3.0; lerobot converts v2.1 "
        "only: bring it to v2.1 with the lerobot release that reads it, then `zk0 dataset convert`"
    )


def converted_path(path: Path) -> Path:
    """Where `zk0 dataset convert` writes the v3.0 copy of `path` by default (lerobot's own suffix)."""
    return path.with_name(f"{path.name}_v30")


def _check_local_layout(path: Path) -> None:
    """The v3.0 files lerobot needs; a missing one would make lerobot ask the Hub for it."""
    info = read_info(path)
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3."):
        raise DatasetURIError(version_problem(path, version))
    for key, what in (("total_episodes", "episodes"), ("total_frames", "frames")):
        count = info.get(key)
        if not isinstance(count, int) or count <= 0:
            raise DatasetURIError(
                f"dataset {path} has no {what} ({key} is {count!r} in meta/info.json): record at least "
                "one episode with frames (and let the recording finish), then retry"
            )
    parts = {
        "meta/tasks.parquet": (path / "meta" / "tasks.parquet").is_file(),
        "meta/episodes/": any((path / "meta" / "episodes").rglob("*.parquet")),
        "data/": any((path / "data").rglob("*.parquet")),
    }
    missing = [name for name, present in parts.items() if not present]
    if missing:
        raise DatasetURIError(
            f"dataset {path} is incomplete: {', '.join(missing)} missing (an interrupted recording or copy?); "
            "copy or record it again"
        )


def resolve(uri: DatasetURI | str) -> DatasetURI:
    """`uri` parsed; a `synthetic:` one generated on first use (zk0.data.synthetic, under
    $ZK0_CACHE_DIR) and given as its local root. Which URIs a node accepts is the caller's rule."""
    uri = parse_dataset_uri(uri, synthetic=True) if isinstance(uri, str) else uri
    if uri.synthetic is None:
        return uri
    from zk0.data.synthetic import materialize
    from zk0.model.factory import default_cache_dir

    return DatasetURI(scheme="local", path=materialize(uri.synthetic, default_cache_dir()))


def precheck(uri: DatasetURI | str) -> DatasetURI:
    """The checks that need neither lerobot nor torch nor the network: a wrong path fails in milliseconds."""
    uri = resolve(uri)
    if uri.is_local:
        path = uri.local_dir
        if not path.is_dir():
            raise DatasetURIError(
                f"dataset directory {path} does not exist: check the path in dataset-uri "
                "(and that it is mounted into the container, if the node runs in one)"
            )
        _check_local_layout(path)
    return uri


def _lerobot_home() -> Path:
    # As lerobot.utils.constants computes it, without importing lerobot (seconds of torch).
    from huggingface_hub.constants import HF_HOME

    return Path(os.getenv("HF_LEROBOT_HOME", str(Path(HF_HOME) / "lerobot"))).expanduser()


def hub_precheck(uri: DatasetURI) -> None:
    """Ask the Hub once whether `uri` (an hf: dataset) is there and readable with this token."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    name = f"hf:{uri.repo_id}"
    if constants.is_offline_mode():
        if (_lerobot_home() / str(uri.repo_id) / "meta" / "info.json").is_file():
            return  # lerobot reads the copy under HF_LEROBOT_HOME
        raise DatasetURIError(
            f"dataset {name} needs the Hugging Face Hub, but HF_HUB_OFFLINE is set: unset it, {LOCAL_INSTEAD}"
        )
    try:
        HfApi().dataset_info(str(uri.repo_id), revision=uri.revision)
    except GatedRepoError as err:
        raise DatasetURIError(
            f"dataset {name} is gated: accept its terms on the Hub with the account whose HF_TOKEN this node uses"
        ) from err
    except RepositoryNotFoundError as err:
        raise DatasetURIError(
            f"dataset {name} is not on the Hub, or it is private and HF_TOKEN gives no access to it: "
            "check the name, and set HF_TOKEN for an account that can read it"
        ) from err
    except RevisionNotFoundError as err:
        raise DatasetURIError(f"dataset {name} has no revision {uri.revision!r}: check the part after '@'") from err
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "no answer"
        raise DatasetURIError(f"the Hugging Face Hub answered {status} for dataset {name}: retry later") from err
    except (OSError, ConnectionError) as err:
        raise _unreachable(name, err) from err
    except Exception as err:  # httpx's transport errors are not OSErrors
        if type(err).__module__.startswith(("httpx", "httpcore")):
            raise _unreachable(name, err) from err
        raise


def _unreachable(name: str, err: Exception) -> DatasetURIError:
    from huggingface_hub import constants

    return DatasetURIError(
        f"cannot reach the Hugging Face Hub at {constants.ENDPOINT} for dataset {name} ({type(err).__name__}): "
        f"check the network, HTTPS_PROXY and HF_ENDPOINT, {LOCAL_INSTEAD}"
    )


@contextlib.contextmanager
def hub_off() -> Iterator[None]:
    """No Hub request from this process while lerobot opens a local root (huggingface_hub
    checks the flag on every request)."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


@contextlib.contextmanager
def _lerobot_errors(name: str) -> Iterator[None]:
    """Whatever lerobot raises reading a dataset becomes one sentence naming it."""
    try:
        yield
    except DatasetURIError:
        raise
    except Exception as err:
        from huggingface_hub.errors import OfflineModeIsEnabled

        if isinstance(err, OfflineModeIsEnabled) or isinstance(err.__cause__, OfflineModeIsEnabled):
            detail = "a file lerobot needs is missing"
        else:
            detail = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}"
        raise DatasetURIError(
            f"dataset {name} could not be read ({detail}); it is damaged or not LeRobot v3.0: copy or record it again"
        ) from err


def open_metadata(uri: DatasetURI | str):
    """Load the dataset metadata for `uri` and check it fits the SO-100/101 schema."""
    uri = precheck(uri)
    if not uri.is_local:
        hub_precheck(uri)
    # lerobot (and torch) load only once the cheap checks have passed: a wrong path fails fast.
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    if uri.is_local:
        root = uri.local_dir
        name = str(root)
        with _lerobot_errors(name), hub_off():
            meta = LeRobotDatasetMetadata(_local_repo_id(root), root=root)
    else:
        name = f"hf:{uri.repo_id}"
        with _lerobot_errors(name):
            meta = LeRobotDatasetMetadata(uri.repo_id, revision=uri.revision)
    tasks = list(meta.tasks.index) if meta.tasks is not None else []
    check_so100_schema(meta.features, meta.fps, tasks, name=name)
    return meta


def open_dataset(uri: DatasetURI | str, episodes: list[int], delta_timestamps: dict | None):
    """The LeRobotDataset restricted to `episodes`, with the policy's time offsets."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from zk0.data.frames import needed_offsets, read_by_column

    uri = resolve(uri)
    # zk0 picks the decoder (lerobot would try torchcodec for every dataset, tracebacks and all).
    options = {
        "episodes": episodes,
        "delta_timestamps": needed_offsets(delta_timestamps),
        "video_backend": video_decoder().backend,
    }
    if uri.is_local:
        root = uri.local_dir
        with _lerobot_errors(str(root)), hub_off():
            dataset = LeRobotDataset(_local_repo_id(root), root=root, **options)
    else:
        dataset = LeRobotDataset(uri.repo_id, revision=uri.revision, **options)
    if dataset.meta.video_keys:
        log_video_decoder()
    return read_by_column(dataset)  # decodes only the frames the policy reads (zk0.data.frames)
