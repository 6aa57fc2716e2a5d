"""Datasets: `synth --overwrite` deletes only what zk0 made (never through a link), an empty
recording fails the check for being empty, and a local dataset never reaches the Hub."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from zk0.data import loading
from zk0.data.synthetic import MARKER, SyntheticDatasetConfig, is_synthetic_dataset, write_synthetic_dataset
from zk0.data.uri import DatasetURIError, parse_dataset_uri

SMALL = SyntheticDatasetConfig(episodes=2, frames_per_episode=12, seed=3)


def test_overwrite_refuses_a_directory_zk0_did_not_make(tmp_path: Path) -> None:
    user = tmp_path / "thesis"
    user.mkdir()
    (user / "chapter1.tex").write_text("irreplaceable")
    with pytest.raises(FileExistsError, match=f"not a synthetic dataset zk0 made \\(no {MARKER} file"):
        write_synthetic_dataset(user, SMALL, overwrite=True)
    with pytest.raises(FileExistsError, match="already exists"):
        write_synthetic_dataset(user, SMALL)
    assert (user / "chapter1.tex").read_text() == "irreplaceable"
    (user / MARKER).symlink_to(user / "chapter1.tex")  # a linked marker does not count
    assert not is_synthetic_dataset(user)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        write_synthetic_dataset(a_file, SMALL, overwrite=True)
    assert a_file.read_text() == "mine"


def test_overwrite_refuses_a_symlinked_root(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.mkdir()
    (target / MARKER).write_text("made by zk0\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(FileExistsError, match="symbolic link"):
        write_synthetic_dataset(link, SMALL, overwrite=True)
    assert is_synthetic_dataset(target) and link.is_symlink()


def test_overwrite_replaces_a_zk0_dataset_without_following_links(tmp_path: Path) -> None:
    root = write_synthetic_dataset(tmp_path / "ds", SMALL)
    assert (root / MARKER).is_file()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("outside the dataset")
    (root / "images" / "linked-dir").symlink_to(outside)
    (root / "linked-file").symlink_to(outside / "keep.txt")
    (root / "stale.txt").write_text("from the old dataset")
    write_synthetic_dataset(root, SyntheticDatasetConfig(episodes=2, frames_per_episode=12, seed=4), overwrite=True)
    assert (outside / "keep.txt").read_text() == "outside the dataset"
    assert not (root / "stale.txt").exists() and not (root / "linked-file").is_symlink()
    assert is_synthetic_dataset(root) and loading.open_metadata(f"local:{root}").total_episodes == 2


def test_an_empty_recording_fails_for_having_no_episodes(tmp_path: Path) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from zk0.data.synthetic import so100_features

    root = tmp_path / "empty-recording"
    dataset = LeRobotDataset.create(repo_id="zk0/empty", fps=30, features=so100_features(SMALL), root=root)
    dataset.finalize()  # recording stopped before the first episode was saved
    with pytest.raises(DatasetURIError, match=r"has no episodes \(total_episodes is 0") as err:
        loading.open_metadata(f"local:{root}")
    assert "task" not in str(err.value).split(":")[0]


def test_zero_frames_fail_for_having_no_frames(synth_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "no-frames"
    shutil.copytree(synth_dataset, root)
    info_path = root / "meta" / "info.json"
    info_path.write_text(json.dumps({**json.loads(info_path.read_text()), "total_frames": 0}))
    with pytest.raises(DatasetURIError, match=r"has no frames \(total_frames is 0"):
        loading.precheck(f"local:{root}")


def test_a_local_dataset_never_reaches_the_hub(synth_dataset: Path, tmp_path: Path, monkeypatch) -> None:
    """lerobot asks the Hub for a metadata file it cannot find; for a local root it must not."""
    from huggingface_hub import constants

    root = tmp_path / "no-episodes-meta"
    shutil.copytree(synth_dataset, root)
    shutil.rmtree(root / "meta" / "episodes")
    with pytest.raises(DatasetURIError, match="meta/episodes/ missing"):
        loading.precheck(f"local:{root}")
    # Past the layout check (as if it missed something), the Hub stays switched off.
    connects: list[object] = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, addr: connects.append(addr))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(loading, "precheck", parse_dataset_uri)
    with pytest.raises(DatasetURIError, match="a file lerobot needs is missing"):
        loading.open_metadata(f"local:{root}")
    assert connects == [] and constants.HF_HUB_OFFLINE is False


def test_offline_hf_dataset_is_refused_unless_a_local_copy_exists(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path))
    uri = parse_dataset_uri("hf:owner/name")
    with pytest.raises(DatasetURIError, match="HF_HUB_OFFLINE is set"):
        loading.hub_precheck(uri)
    (tmp_path / "owner" / "name" / "meta").mkdir(parents=True)
    (tmp_path / "owner" / "name" / "meta" / "info.json").write_text("{}")
    loading.hub_precheck(uri)  # lerobot reads the copy under HF_LEROBOT_HOME


def test_cli_redacts_secrets(monkeypatch) -> None:
    from zk0.cli import redact

    monkeypatch.setenv("HF_TOKEN", "hf_FAKE_zk0_test_token_1234567890")
    monkeypatch.setenv("SOME_SERVICE_API_KEY", "abcdefgh12345")
    text = redact("GET /x Authorization: Bearer hf_FAKE_zk0_test_token_1234567890 key=abcdefgh12345")
    assert text == "GET /x Authorization: Bearer <HF_TOKEN> key=<SOME_SERVICE_API_KEY>"
