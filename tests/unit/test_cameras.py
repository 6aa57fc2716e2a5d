"""The camera rule: dataset cameras onto the policy's camera1 (top/front), camera2 (wrist) and
camera3 (side) by the alias table; extras dropped with one log line; none known, refused."""

from __future__ import annotations

import logging

import pytest

from zk0.data.cameras import ALIASES, POLICY_CAMERAS, CameraMappingError, map_cameras
from zk0.data.schema import ACTION_KEY, CAMERA_PREFIX, STATE_KEY

VIDEO = {"dtype": "video", "shape": (48, 64, 3), "names": ["height", "width", "channels"]}


def features(*cameras: str) -> dict:
    joints = {"dtype": "float32", "shape": (6,), "names": None}
    return {STATE_KEY: joints, ACTION_KEY: joints, **{CAMERA_PREFIX + c: dict(VIDEO) for c in cameras}}


def renames(*cameras: str) -> dict[str, str]:
    mapping = map_cameras(features(*cameras), "test")
    return {k.removeprefix(CAMERA_PREFIX): v.removeprefix(CAMERA_PREFIX) for k, v in mapping.renames.items()}


@pytest.mark.parametrize(
    ("cameras", "expected"),
    [
        (("front", "wrist"), {"front": "camera1", "wrist": "camera2"}),  # lerobot-record's SO-100 examples
        (("laptop", "phone"), {"laptop": "camera1", "phone": "camera3"}),  # lerobot's older examples
        (("camera1", "camera2", "camera3"), {"camera1": "camera1", "camera2": "camera2", "camera3": "camera3"}),
        (("image", "image2"), {"image": "camera1", "image2": "camera2"}),  # lerobot's community datasets
        (
            ("cam_high", "left_wrist", "Side-View"),
            {"cam_high": "camera1", "left_wrist": "camera2", "Side-View": "camera3"},
        ),
        (("wrist",), {"wrist": "camera2"}),  # a slot left empty stays empty
    ],
)
def test_cameras_go_to_the_slot_their_name_says(cameras, expected):
    assert renames(*cameras) == expected


def test_a_slot_takes_one_camera_the_rest_are_dropped_with_one_log_line(caplog):
    caplog.set_level(logging.INFO, logger="zk0.data.cameras")
    mapping = map_cameras(features("front", "usb_cam", "top", "wrist", "gripper"), "ds-x")
    # Both `top` and `front` say camera1: the earlier alias wins; `wrist` is an exact name.
    assert mapping.renames == {
        CAMERA_PREFIX + "top": CAMERA_PREFIX + "camera1",
        CAMERA_PREFIX + "wrist": CAMERA_PREFIX + "camera2",
    }
    assert mapping.dropped == tuple(CAMERA_PREFIX + c for c in ("front", "usb_cam", "gripper"))
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == "dataset ds-x: cameras top->camera1, wrist->camera2; dropped front, usb_cam, gripper"
    # An exact name beats a word match for the same slot, whatever the dataset's order.
    assert renames("top_left", "top") == {"top": "camera1"}


def test_nothing_is_logged_when_every_camera_is_used(caplog):
    caplog.set_level(logging.INFO, logger="zk0.data.cameras")
    map_cameras(features("front", "wrist"), "ds")
    assert caplog.records == []


def test_a_dataset_with_no_known_camera_name_is_refused_naming_its_cameras_and_the_aliases():
    with pytest.raises(CameraMappingError) as err:
        map_cameras(features("usb0", "cam_a"), "local:/data/x")
    message = str(err.value)
    assert message.startswith("dataset local:/data/x: none of its cameras (usb0, cam_a) has a name zk0 maps")
    assert all(f"{slot}: {', '.join(ALIASES[slot])}" in message for slot in POLICY_CAMERAS)
    assert "front or wrist" in message


def test_samples_and_metadata_get_the_policys_camera_names():
    mapping = map_cameras(features("front", "wrist", "spare"), "ds")
    item = {
        STATE_KEY: 1,
        CAMERA_PREFIX + "front": "f",
        CAMERA_PREFIX + "front_is_pad": False,
        CAMERA_PREFIX + "wrist": "w",
        CAMERA_PREFIX + "spare": "s",
        CAMERA_PREFIX + "spare_is_pad": False,
        "action_is_pad": [False],
        "task": "pick",
    }
    assert mapping.sample(item) == {
        STATE_KEY: 1,
        CAMERA_PREFIX + "camera1": "f",
        CAMERA_PREFIX + "camera1_is_pad": False,
        CAMERA_PREFIX + "camera2": "w",
        "action_is_pad": [False],
        "task": "pick",
    }


def test_the_policys_view_declares_all_three_slots_and_leaves_the_dataset_alone(synth_meta):
    front = CAMERA_PREFIX + "front"  # the synthetic dataset's one camera
    view = map_cameras(synth_meta.features, "ds").policy_metadata(synth_meta)
    cameras = sorted(k for k in view.features if k.startswith(CAMERA_PREFIX))
    assert cameras == [CAMERA_PREFIX + slot for slot in POLICY_CAMERAS]
    assert view.features[CAMERA_PREFIX + "camera3"] == synth_meta.features[front]  # declared like the first
    assert view.stats[CAMERA_PREFIX + "camera1"] is synth_meta.stats[front] and front not in view.stats
    assert view.stats[STATE_KEY] is synth_meta.stats[STATE_KEY]
    assert front in synth_meta.features and CAMERA_PREFIX + "camera1" not in synth_meta.features
    assert view.total_episodes == synth_meta.total_episodes and view.fps == synth_meta.fps


def test_zk0_dataset_check_shows_the_mapping_or_the_refusal(zk0_cache):
    from typer.testing import CliRunner

    from zk0.cli import app

    runner = CliRunner()
    good = runner.invoke(app, ["dataset", "check", "synthetic:cli-good?cameras=front+wrist+usb&episodes=2&frames=8"])
    assert good.exit_code == 0, good.output
    assert good.output.strip().endswith("cameras front->camera1, wrist->camera2; dropped usb")
    bad = runner.invoke(app, ["dataset", "check", "synthetic:cli-bad?cameras=usb0&episodes=2&frames=8"])
    assert bad.exit_code != 0 and "none of its cameras (usb0) has a name zk0 maps" in bad.output
