"""Dataset formats without encoding anything: the synthetic recording's settings, the choice of
video decoder, and what `zk0 dataset convert` refuses before it writes a byte."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from zk0.data import video
from zk0.data.convert import ConvertConfig, ConvertError, convert_dataset
from zk0.data.loading import precheck
from zk0.data.synthetic import SyntheticDatasetConfig, parse_resolution, so100_features
from zk0.data.uri import DatasetURIError


def test_a_recording_has_front_and_wrist_video_at_30_fps() -> None:
    cfg = SyntheticDatasetConfig.recording(image_height=480, image_width=640)
    assert (cfg.cameras, cfg.video, cfg.fps) == (("front", "wrist"), True, 30)
    features = so100_features(cfg)
    cameras = {k: v for k, v in features.items() if k.startswith("observation.images.")}
    assert sorted(cameras) == ["observation.images.front", "observation.images.wrist"]
    assert {(v["dtype"], v["shape"]) for v in cameras.values()} == {("video", (480, 640, 3))}
    # The fast default stays one camera stored as images.
    assert [v["dtype"] for k, v in so100_features(SyntheticDatasetConfig()).items() if "images" in k] == ["image"]


@pytest.mark.parametrize(("text", "expected"), [("48x64", (48, 64)), ("480X640", (480, 640)), (" 96x128 ", (96, 128))])
def test_resolution_is_height_by_width(text: str, expected: tuple[int, int]) -> None:
    assert parse_resolution(text) == expected


@pytest.mark.parametrize("text", ["640", "48x", "x64", "48*64", "8x8", "-48x64", "48.0x64"])
def test_a_malformed_resolution_names_the_form(text: str) -> None:
    with pytest.raises(ValueError, match="give HEIGHTxWIDTH in pixels"):
        parse_resolution(text)


def test_video_needs_even_sizes_images_do_not() -> None:
    with pytest.raises(ValueError, match="video frames need even sizes, not 47x64"):
        SyntheticDatasetConfig.recording(image_height=47)
    assert SyntheticDatasetConfig(image_height=47).image_height == 47


@pytest.fixture
def fresh_decoder():
    video.video_decoder.cache_clear()
    video.log_video_decoder.cache_clear()
    yield
    video.video_decoder.cache_clear()
    video.log_video_decoder.cache_clear()


def test_missing_ffmpeg_means_pyav_said_once_in_one_line(monkeypatch, caplog, fresh_decoder) -> None:
    def missing_ffmpeg():
        raise RuntimeError(
            "Could not load libtorchcodec. Likely causes:\n[start of libtorchcodec loading traceback]\n"
            "Traceback (most recent call last):\nOSError: libavutil.so.59: cannot open shared object file"
        )

    monkeypatch.setattr(video, "_load_torchcodec", missing_ffmpeg)
    caplog.set_level(logging.INFO)
    decoder = video.video_decoder()
    assert decoder.backend == "pyav"
    assert decoder.detail.startswith("torchcodec cannot load (Could not load libtorchcodec); install FFmpeg")
    video.log_video_decoder()
    video.log_video_decoder()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, f"video decoder: pyav ({decoder.detail})")
    ]
    assert "Traceback" not in caplog.text


def test_no_torchcodec_at_all_means_pyav(monkeypatch, fresh_decoder) -> None:
    monkeypatch.setattr(video.importlib.util, "find_spec", lambda name: None)
    assert video.video_decoder() == video.VideoDecoder("pyav", "torchcodec is not installed")


def _layout(root: Path, version: str, legacy_files: bool = True) -> Path:
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps({"codebase_version": version, "fps": 30}))
    if legacy_files:
        (root / "data" / "chunk-000").mkdir(parents=True)
        (root / "data" / "chunk-000" / "episode_000000.parquet").write_bytes(b"PAR1")
        for name in ("episodes.jsonl", "tasks.jsonl", "episodes_stats.jsonl"):
            (root / "meta" / name).write_text("{}\n")
    return root


def test_check_says_v21_and_gives_the_command(tmp_path: Path) -> None:
    root = _layout(tmp_path / "old-recording", "v2.1")
    with pytest.raises(DatasetURIError) as err:
        precheck(f"local:{root}")
    message = str(err.value)
    assert "is a LeRobot v2.1 dataset" in message and "meta/episodes.jsonl" in message
    assert f"`zk0 dataset convert local:{root}` (writes {root}_v30" in message


def _refusal(tmp_path: Path, **options) -> str:
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ConvertError) as err:
        convert_dataset(ConvertConfig(**options))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    return str(err.value)


def test_convert_refuses_what_it_cannot_convert(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert "is not a LeRobot dataset (no meta/info.json)" in _refusal(tmp_path, source=tmp_path / "empty")
    assert "does not exist" in _refusal(tmp_path, source=tmp_path / "absent")
    v30 = _layout(tmp_path / "new", "v3.0", legacy_files=False)
    assert f"already LeRobot v3.0: nothing to convert; use dataset-uri=local:{v30}" in _refusal(tmp_path, source=v30)
    v20 = _layout(tmp_path / "older", "v2.0")
    assert "lerobot converts v2.1 only" in _refusal(tmp_path, source=v20)
    partial = _layout(tmp_path / "partial", "v2.1")
    (partial / "meta" / "episodes_stats.jsonl").unlink()
    assert "incomplete v2.1 dataset (meta/episodes_stats.jsonl missing)" in _refusal(tmp_path, source=partial)


def test_convert_refuses_an_output_it_would_clobber(tmp_path: Path) -> None:
    source = _layout(tmp_path / "rec", "v2.1")
    (tmp_path / "rec_v30").mkdir()
    (tmp_path / "rec_v30" / "notes.txt").write_text("mine")
    assert "output" in _refusal(tmp_path, source=source) and "already exists" in _refusal(tmp_path, source=source)
    assert "is inside the dataset" in _refusal(tmp_path, source=source, output=source / "v30")
    (tmp_path / "a-file").write_text("")
    assert "a-file is a file" in _refusal(tmp_path, source=source, output=tmp_path / "a-file" / "v30")
    # In place, lerobot would delete a `_v30` or `_old` beside the dataset: refused.
    assert "rec_v30 exists and lerobot's in-place conversion" in _refusal(tmp_path, source=source, in_place=True)


def test_convert_takes_local_uris_only() -> None:
    with pytest.raises(ConvertError, match="converts local datasets only: download it"):
        ConvertConfig.from_uri("hf:lerobot/svla_so100_pickplace")
    assert ConvertConfig.from_uri("local:/data/rec").destination == Path("/data/rec_v30")
    assert ConvertConfig.from_uri("local:/data/rec", in_place=True).destination == Path("/data/rec")


def test_a_failed_conversion_leaves_everything_as_it_was(tmp_path: Path, monkeypatch) -> None:
    from zk0.data import convert

    def fail_midway(root: Path) -> None:  # as lerobot fails after moving the original aside
        (root.parent / f"{root.name}_v30").mkdir()
        root.replace(root.with_name(f"{root.name}_old"))
        raise OSError("No space left on device")

    monkeypatch.setattr(convert, "_lerobot_convert", fail_midway)
    source = _layout(tmp_path / "rec", "v2.1")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for options in ({"in_place": True}, {"output": tmp_path / "out"}):
        with pytest.raises(OSError, match="No space left"):
            convert_dataset(ConvertConfig(source=source, **options))
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, options
